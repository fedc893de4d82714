"""Label subsets and label-budget probes (paper Table 2 right, Table 5; SPEC §5.3)."""

import json

import numpy as np
import pytest

from maevae.errors import MaevaeError
from maevae.evaluate.probes import label_subset, probe_suite


def blobs(n_per_class, n_classes=10, sep=20.0, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = sep * np.eye(n_classes)[y] + noise * rng.standard_normal((y.size, n_classes))
    return x, y


LABELS = np.repeat(np.arange(10), 50)  # 500 labels, 50 per class


def test_balanced_subset_has_exact_budget_and_balance():
    idx = label_subset(LABELS, 100, np.random.default_rng(0))
    assert idx.size == 100 and np.unique(idx).size == 100
    assert np.all(np.diff(idx) > 0)
    assert np.array_equal(np.bincount(LABELS[idx], minlength=10), np.full(10, 10))


def test_balanced_remainder_goes_to_first_classes():
    idx = label_subset(LABELS, 105, 1)
    assert idx.size == 105
    assert np.bincount(LABELS[idx]).tolist() == [11] * 5 + [10] * 5
    # string labels: remainder goes to the first classes in sorted order
    names = np.array(["b", "a", "c"] * 4)
    assert sorted(names[label_subset(names, 5, 0)].tolist()) == ["a", "a", "b", "b", "c"]


def test_subsets_are_deterministic_per_seed():
    a = label_subset(LABELS, 100, np.random.default_rng(5))
    b = label_subset(LABELS, 100, np.random.default_rng(5))
    c = label_subset(LABELS, 100, np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_uniform_switch_follows_label_frequencies():
    skewed = np.array([0] * 900 + [1] * 100)
    uniform = label_subset(skewed, 100, 0, balanced=False)
    balanced = label_subset(skewed, 100, 0, balanced=True)
    assert uniform.size == 100 and np.unique(uniform).size == 100
    assert np.sum(skewed[uniform] == 0) > 70
    assert np.bincount(skewed[balanced]).tolist() == [50, 50]
    assert np.array_equal(label_subset(skewed, "all", 0), np.arange(1000))


@pytest.mark.parametrize(
    "n, balanced, match",
    [
        (0, True, "must be positive"),
        (-3, True, "must be positive"),
        (501, True, "exceeds the 500"),
        (501, False, "exceeds the 500"),
        (1.5, True, "not understood"),
        (True, True, "not understood"),
        ("most", True, "not understood"),
    ],
)
def test_bad_budgets_raise(n, balanced, match):
    with pytest.raises(MaevaeError, match=match):
        label_subset(LABELS, n, 0, balanced=balanced)


def test_balanced_budget_beyond_a_small_class_raises():
    skewed = np.array([0] * 900 + [1] * 100)
    with pytest.raises(MaevaeError, match="needs 150 examples of class 1 but there are only 100"):
        label_subset(skewed, 300, 0)
    assert label_subset(skewed, 300, 0, balanced=False).size == 300


def test_probes_on_separable_codes_are_perfect_and_layout_is_complete():
    xtr, ytr = blobs(30, seed=0)
    xte, yte = blobs(10, seed=1)
    out = probe_suite(xtr, ytr, xte, yte, budgets=(100, "all"), runs=3, seed=0)
    assert json.loads(json.dumps(out)) == out
    assert set(out) == {"protocol", "results", "wall_time_s"}
    assert out["protocol"]["budgets"] == ["100", "all"]
    assert out["protocol"]["n_train"] == 300 and out["protocol"]["n_classes"] == 10
    assert set(out["results"]) == {"knn", "logreg", "svm_linear", "svm_rbf"}
    for clf, per_budget in out["results"].items():
        assert set(per_budget) == {"100", "all"}
        r100, rall = per_budget["100"], per_budget["all"]
        assert r100["acc_test"]["values"] == [1.0, 1.0, 1.0], clf
        assert r100["acc_test"]["std"] == 0.0 and r100["runs"] == 3 and r100["n_labels"] == 100
        assert len(r100["time_s"]["values"]) == 3 and r100["time_s"]["mean"] > 0
        assert rall["runs"] == 1 and rall["n_labels"] == 300 and rall["acc_test"]["mean"] == 1.0
        assert isinstance(r100["converged"], bool)


def test_runs_draw_different_subsets_and_report_their_spread():
    rng = np.random.default_rng(0)
    xtr, ytr = rng.standard_normal((400, 4)), rng.integers(0, 4, 400)
    xtr[:, 0] += ytr  # weak signal: accuracies vary with the labelled subset
    xte, yte = rng.standard_normal((200, 4)), rng.integers(0, 4, 200)
    xte[:, 0] += yte
    out = probe_suite(xtr, ytr, xte, yte, budgets=(20,), runs=4, seed=1,
                      classifiers=("knn", "logreg"))
    for clf in ("knn", "logreg"):
        stat = out["results"][clf]["20"]["acc_test"]
        assert len(set(stat["values"])) > 1
        assert stat["std"] == pytest.approx(np.std(stat["values"], ddof=1)) and stat["std"] > 0
    # same seed -> same numbers
    again = probe_suite(xtr, ytr, xte, yte, budgets=(20,), runs=4, seed=1,
                        classifiers=("knn", "logreg"))
    assert again["results"]["knn"]["20"]["acc_test"] == out["results"]["knn"]["20"]["acc_test"]


def test_standardize_and_libsvm_linear_option():
    xtr, ytr = blobs(12, seed=0)
    xte, yte = blobs(3, seed=1)
    out = probe_suite(xtr * 50 + 7, ytr, xte * 50 + 7, yte, budgets=(50,), runs=1,
                      classifiers=("svm_linear_libsvm", "knn"), standardize=True)
    assert out["protocol"]["standardize"] is True
    assert out["results"]["svm_linear_libsvm"]["50"]["acc_test"]["mean"] == 1.0
    assert out["results"]["knn"]["50"]["acc_test"]["mean"] == 1.0


def test_probe_errors():
    xtr, ytr = blobs(5, seed=0)
    with pytest.raises(MaevaeError, match="unknown probe classifier 'mlp'"):
        probe_suite(xtr, ytr, xtr, ytr, classifiers=("mlp",))
    with pytest.raises(MaevaeError, match="exceeds the 50"):
        probe_suite(xtr, ytr, xtr, ytr, budgets=(100,))
    with pytest.raises(MaevaeError, match="not understood"):
        probe_suite(xtr, ytr, xtr, ytr, budgets=("half",))
    with pytest.raises(MaevaeError, match="dims"):
        probe_suite(xtr, ytr, xtr[:, :3], ytr)
