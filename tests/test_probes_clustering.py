"""K-means cluster accuracy (paper Table 2 left; SPEC §5.2) on codes with known answers."""

import json

import numpy as np
import pytest

from maevae.errors import MaevaeError
from maevae.evaluate.clustering import (
    clustering_suite,
    hungarian_accuracy,
    kmeans_cluster_accuracy,
)


def blobs(n_per_class, n_classes=10, dim=10, sep=20.0, noise=0.3, seed=0):
    """Tight Gaussian blobs at the vertices sep * e_c: labels are the blob index."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    centres = sep * np.eye(n_classes, dim)
    x = centres[y] + noise * rng.standard_normal((y.size, dim))
    return x, y


def test_separated_blobs_are_clustered_perfectly():
    xtr, ytr = blobs(40, seed=0)
    xte, yte = blobs(20, seed=1)
    out = clustering_suite(xtr, ytr, xte, yte, ks=(10, 20, 30), runs=2, seed=3, n_init=3)
    k10 = out["kmeans"]["10"]
    for metric in ("acc_test", "acc_train", "acc_test_majority", "acc_train_majority",
                   "nmi_test", "ari_test"):
        assert k10[metric]["values"] == [1.0, 1.0], metric
    assert out["hungarian"]["k"] == 10
    assert out["hungarian"]["acc_test"]["mean"] == 1.0
    assert out["hungarian"]["acc_train"]["mean"] == 1.0
    for k in ("20", "30"):
        for metric in ("acc_test", "acc_train", "acc_test_majority", "acc_train_majority"):
            assert min(out["kmeans"][k][metric]["values"]) >= 0.99, (k, metric)


def test_suite_layout_is_json_serialisable_with_std_over_runs():
    xtr, ytr = blobs(10, seed=0)
    xte, yte = blobs(5, seed=1)
    out = clustering_suite(xtr, ytr, xte, yte, ks=(12,), runs=3, seed=7, n_init=2)
    assert json.loads(json.dumps(out)) == out
    assert set(out) == {"protocol", "kmeans", "hungarian", "wall_time_s"}
    assert out["protocol"]["seeds"] == [7, 8, 9]
    assert out["protocol"]["ks"] == [12] and out["protocol"]["n_classes"] == 10
    entry = out["kmeans"]["12"]
    assert set(entry) == {"acc_test", "acc_train", "acc_test_majority", "acc_train_majority",
                          "nmi_test", "ari_test", "inertia", "wall_time_s"}
    for stat in (v for v in entry.values() if isinstance(v, dict)):
        assert set(stat) == {"mean", "std", "values"} and len(stat["values"]) == 3
        assert stat["std"] == pytest.approx(np.std(stat["values"], ddof=1))
    # K = n_classes was not among ks: the Hungarian block ran K=10 on its own.
    assert out["hungarian"]["k"] == 10 and len(out["hungarian"]["acc_test"]["values"]) == 3


def test_random_codes_score_near_chance():
    rng = np.random.default_rng(0)
    xtr, ytr = rng.standard_normal((3000, 8)), rng.integers(0, 10, 3000)
    xte, yte = rng.standard_normal((2000, 8)), rng.integers(0, 10, 2000)
    res = kmeans_cluster_accuracy(xtr, ytr, xte, yte, k=10, seed=0, n_init=2)
    for metric in ("acc_test", "acc_test_majority", "acc_test_hungarian"):
        assert abs(res[metric] - 0.1) < 0.1, metric
    assert abs(res["nmi_test"]) < 0.05 and abs(res["ari_test"]) < 0.05


def test_nearest_sample_rule_differs_from_majority_vote():
    # Cluster A (around 0): centroid 0.0 whose nearest training sample has the minority label 1.
    # Cluster B (around 100): all label 2.
    xtr = np.array([-1.0, -0.9, 0.0, 0.9, 1.0, 99.0, 100.0, 101.0])
    ytr = np.array([0, 0, 1, 0, 0, 2, 2, 2])
    xte = np.array([-0.5, 0.5, 0.2, -0.2, 100.5, 99.5])
    yte = np.array([0, 1, 0, 0, 2, 1])
    pad = lambda v: np.stack([v, np.zeros_like(v)], axis=1)  # 2-D codes [N, 2]
    res = kmeans_cluster_accuracy(pad(xtr), ytr, pad(xte), yte, k=2, seed=0)
    # nearest rule: A -> 1, B -> 2; majority: A -> 0, B -> 2.
    assert res["acc_train"] == pytest.approx(4 / 8)
    assert res["acc_train_majority"] == pytest.approx(7 / 8)
    assert res["acc_test"] == pytest.approx(2 / 6)
    assert res["acc_test_majority"] == pytest.approx(4 / 6)
    assert "acc_test_hungarian" not in res  # K=2 != 3 classes


def test_hungarian_accuracy_exact():
    assign = np.array([0, 0, 1, 1, 2, 2])
    labels = np.array([1, 1, 0, 0, 2, 0])
    assert hungarian_accuracy(assign, labels) == pytest.approx(5 / 6)
    # Labels need not be 0..C-1 and clusters may outnumber classes (extra cluster is wrong).
    assert hungarian_accuracy([5, 5, 7, 9], ["a", "a", "b", "b"]) == pytest.approx(3 / 4)


def test_errors_are_one_line_maevae_errors():
    xtr, ytr = blobs(1, seed=0)  # 10 codes
    with pytest.raises(MaevaeError, match="K=11 clusters but only 10 training codes"):
        clustering_suite(xtr, ytr, xtr, ytr, ks=(10, 11), runs=1)
    with pytest.raises(MaevaeError, match="K=11"):
        kmeans_cluster_accuracy(xtr, ytr, xtr, ytr, k=11, seed=0)
    with pytest.raises(MaevaeError, match="2-D"):
        clustering_suite(xtr[:, 0], ytr, xtr, ytr)
    with pytest.raises(MaevaeError, match="one label per code"):
        clustering_suite(xtr, ytr[:5], xtr, ytr)
    with pytest.raises(MaevaeError, match="NaN"):
        bad = xtr.copy()
        bad[0, 0] = np.nan
        clustering_suite(xtr, ytr, bad, ytr)
    with pytest.raises(MaevaeError, match="runs"):
        clustering_suite(xtr, ytr, xtr, ytr, ks=(2,), runs=0)
    with pytest.raises(MaevaeError) as err:
        kmeans_cluster_accuracy(xtr, ytr, xtr[:, :3], ytr, k=2, seed=0)
    assert "\n" not in str(err.value)
