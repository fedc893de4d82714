"""Label-budget probes on frozen latent codes (paper §4.1.2, Table 2 right, Table 5; SPEC §5.3).

M1-style semi-supervised classification (Kingma et al. 2014): the encoder is frozen, a
simple classifier is trained on the codes of a labelled subset of the training set and
scored on the whole test set. Budgets are 100, 1,000 and "all" labels; the paper reports
the mean (Table 5: ± std) over 5 runs, each with a new random labelled subset.

Classifiers (scikit-learn defaults, no tuning: the paper's low RBF accuracies at 100 labels
suggest untuned defaults):

========== ================================================================================
key        estimator
========== ================================================================================
knn        ``KNeighborsClassifier(n_neighbors=10)`` (uniform weights, exact search);
           ``n_neighbors`` is clipped to the budget when a budget is below 10.
logreg     ``LogisticRegression(C=1.0, max_iter=1000)`` (lbfgs, multinomial): the paper's
           "Linear" column of Table 2.
svm_linear ``LinearSVC(C=1.0, dual="auto", max_iter=10000)`` (liblinear, one-vs-rest, squared
           hinge). Chosen over ``SVC(kernel="linear")`` (libsvm, one-vs-one, hinge), which is
           the other reading of "SVM-Linear" and is available as ``svm_linear_libsvm``:
           libsvm's time grows quickly with class overlap and code scale (see timings).
svm_rbf    ``SVC(C=1.0, kernel="rbf", gamma="scale", cache_size=1000)`` (libsvm, one-vs-one).
           ``cache_size`` (MB of kernel cache) changes speed only, never the solution.
========== ================================================================================

Protocol choices (SPEC §5.3 leaves them open):

* Labelled subsets are **class-balanced** by default (:func:`label_subset`); ``balanced=False``
  draws uniformly without replacement. Budget ``"all"`` uses every training code (MNIST's
  classes are not exactly balanced, so a balanced 60,000 would be impossible).
* Run ``r`` draws its subset from ``numpy.random.default_rng([seed, r, budget])``; all
  classifiers of one run see the same subset (paired comparison).
* Budget ``"all"`` is run **once**: the subset is the whole training set and every
  classifier above is deterministic given its data (exact KNN, lbfgs, liblinear's primal
  solver, libsvm without probability estimates), so repeats would give identical numbers;
  its ``std`` is 0.0 (the paper's Table 5 shows ±0.0 for "All").
* ``std`` over runs is the sample standard deviation (ddof=1).
* No standardisation by default (the paper mentions none). ``standardize=True`` fits a
  ``StandardScaler`` on **all** training codes (unlabelled codes are available in the
  semi-supervised setting) and applies it to train and test codes.

Output of :func:`probe_suite` (JSON-serialisable)::

    {
      "protocol": {"balanced": True, "standardize": False, "runs": 5, "seed": 0,
                   "budgets": ["100", "1000", "all"], "n_train": 60000, "n_test": 10000,
                   "n_classes": 10, "classifiers": {"knn": "KNeighborsClassifier(...)", ...}},
      "results": {
        "knn": {
          "100": {"budget": "100", "n_labels": 100, "runs": 5, "acc_test": STAT,
                  "time_s": STAT, "converged": True},
          "1000": {...}, "all": {...}
        },
        "logreg": {...}, "svm_linear": {...}, "svm_rbf": {...}
      },
      "wall_time_s": float
    }

``STAT = {"mean": float, "std": float, "values": [float, ...]}``; accuracies are fractions
in [0, 1]; ``time_s`` is the wall time of fit + predict of one run; ``converged`` is False
if any run raised a scikit-learn ``ConvergenceWarning``.

Timings, budget "all" (60,000 x 32 training codes, 10 classes, 10,000 test codes from
:func:`synthetic_codes`; fit + predict, one run; 2 CPU cores, scikit-learn 1.9.1, load
average about 1.3; reproduce with ``python -m maevae.evaluate.probes --timing``):

    ================== ======== ========= =============================================
    classifier         seconds  test acc  notes
    ================== ======== ========= =============================================
    knn                1.2-1.5  96.2 %    exact search (kd-tree), single thread
    logreg             1.9-2.0  95.2 %    lbfgs converged (max_iter 1000)
    svm_linear         2.8-3.3  93.7 %    LinearSVC primal (dual="auto"), one-vs-rest
    svm_rbf            37-41    99.7 %    SVC, cache_size 1000 MB
    svm_linear_libsvm  10-13    98.9 %    SVC(kernel="linear"), one-vs-one
    ================== ======== ========= =============================================

The SVM times grow with class overlap and code scale, because both set the number of
support vectors: with more overlapping synthetic codes (separation 0.5) svm_rbf took
109 s and svm_linear_libsvm 32 s, and with those codes multiplied by 3 svm_linear_libsvm
took 131 s while LinearSVC took 6 s. Hence LinearSVC is the default linear SVM: its time
stays a few seconds whatever the codes look like. The two linear
SVMs are different models (one-vs-rest squared hinge vs one-vs-one hinge) and can differ
by several points when classes are multi-modal (93.7 vs 98.9 % above); report which one
was used. RBF SVM at 60k stayed under the ~3-minute mark on these codes (37-109 s), so no
other speed-up was needed. The larger kernel cache gave no measurable gain: on a shared,
loaded machine (load 3-5.5 on 2 cores) SVC took 49-95 s with the default 200 MB and
45-69 s with 1000 MB, differences within the load noise; it is kept because it cannot
hurt. Budgets 100 and 1,000 take well under a second each. Expect every time above to
grow in proportion to the machine's load.
(An unpublished draft script in the authors' repository history used
``KNeighborsClassifier(weights="distance")``, ``SVC(kernel="linear")``, uniformly drawn
subsets and majority-vote cluster labels; none of it is in the released code or the
paper, so the paper's protocol as stated is followed here.)
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from maevae.errors import MaevaeError
from maevae.evaluate.clustering import check_code_pair, summarize_runs

__all__ = [
    "CLASSIFIERS",
    "TIMINGS_60K",
    "benchmark_all_labels",
    "label_subset",
    "make_classifier",
    "probe_suite",
    "synthetic_codes",
]

CLASSIFIERS = ("knn", "logreg", "svm_linear", "svm_rbf", "svm_linear_libsvm")

# Measured seconds for fit + predict with budget "all" on 60,000 x 32 synthetic codes
# (upper end of the measured range; setup in the module docstring).
TIMINGS_60K: dict[str, float] = {
    "knn": 1.5,
    "logreg": 2.0,
    "svm_linear": 3.3,
    "svm_rbf": 41.0,
    "svm_linear_libsvm": 12.7,
}


def make_classifier(name: str, n_train: int, seed: int = 0):
    """A fresh scikit-learn estimator for ``name`` (one of :data:`CLASSIFIERS`)."""
    if name == "knn":
        return KNeighborsClassifier(n_neighbors=min(10, int(n_train)))
    if name == "logreg":
        return LogisticRegression(C=1.0, max_iter=1000)
    if name == "svm_linear":
        return LinearSVC(C=1.0, dual="auto", max_iter=10000, random_state=seed)
    if name == "svm_rbf":
        return SVC(C=1.0, kernel="rbf", gamma="scale", cache_size=1000)
    if name == "svm_linear_libsvm":
        return SVC(C=1.0, kernel="linear", cache_size=1000)
    raise MaevaeError(f"unknown probe classifier {name!r}: choose from {', '.join(CLASSIFIERS)}")


def _as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def label_subset(labels, n, rng=None, balanced: bool = True) -> np.ndarray:
    """Indices (sorted, int64) of a labelled subset of size ``n`` drawn without replacement.

    ``n`` is a positive int or ``"all"`` (every index). ``balanced=True`` takes exactly
    ``n // C`` examples of each of the C classes; when ``n`` is not divisible by C the
    remainder ``n % C`` goes one extra example each to the first classes in sorted label
    order (deterministic). ``balanced=False`` draws uniformly from all examples. ``rng`` is
    a ``numpy.random.Generator`` or a seed. Budgets that are not positive, exceed the number
    of examples, or need more examples of a class than it has raise ``MaevaeError``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise MaevaeError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    total = labels.size
    if isinstance(n, str):
        if n.lower() == "all":
            return np.arange(total, dtype=np.int64)
        raise MaevaeError(f"label budget {n!r} is not understood: use a positive integer or 'all'")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise MaevaeError(f"label budget {n!r} is not understood: use a positive integer or 'all'")
    n = int(n)
    if n <= 0:
        raise MaevaeError(f"label budget must be positive, got {n}: use e.g. 100 or 'all'")
    if n > total:
        raise MaevaeError(
            f"label budget {n} exceeds the {total} labelled training codes: "
            "use a smaller budget or 'all'"
        )
    rng = _as_rng(rng)
    if not balanced:
        return np.sort(rng.choice(total, size=n, replace=False)).astype(np.int64)
    classes = np.unique(labels)
    base, rem = divmod(n, classes.size)
    picked = []
    for i, c in enumerate(classes):
        quota = base + (1 if i < rem else 0)
        members = np.flatnonzero(labels == c)
        if quota > members.size:
            raise MaevaeError(
                f"a balanced budget of {n} needs {quota} examples of class {c.item()!r} but there "
                f"are only {members.size}: use a smaller budget, or uniform draws "
                "(maevae eval --uniform-labels; balanced=False in Python)"
            )
        if quota:
            picked.append(rng.choice(members, size=quota, replace=False))
    return np.sort(np.concatenate(picked)).astype(np.int64)


def _budget_key(budget) -> str:
    if isinstance(budget, str):
        if budget.lower() == "all":
            return "all"
    elif not isinstance(budget, bool) and isinstance(budget, (int, np.integer)) and budget > 0:
        return str(int(budget))
    raise MaevaeError(f"label budget {budget!r} is not understood: use a positive integer or 'all'")


def _fit_score(name: str, x_tr, y_tr, x_te, y_te, seed: int) -> tuple[float, float, bool]:
    """Fit classifier ``name``; return (test accuracy, seconds, converged)."""
    if np.unique(y_tr).size < 2:
        raise MaevaeError(
            "the labelled subset holds a single class: use a larger budget or balanced=True"
        )
    clf = make_classifier(name, len(y_tr), seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(x_tr, y_tr)
        acc = float(np.mean(clf.predict(x_te) == y_te))
    seconds = time.perf_counter() - t0
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return acc, seconds, converged


def probe_suite(
    train_codes,
    train_y,
    test_codes,
    test_y,
    budgets: Sequence = (100, 1000, "all"),
    runs: int = 5,
    seed: int = 0,
    classifiers: Sequence[str] = ("knn", "logreg", "svm_linear", "svm_rbf"),
    balanced: bool = True,
    standardize: bool = False,
    on_result: Callable[[str, str, dict], None] | None = None,
) -> dict:
    """Test accuracy of each classifier at each label budget; layout in the module docstring.

    ``on_result``, when given, is called as ``on_result(classifier, budget_key, entry)``
    as soon as each (budget, classifier) cell is done (for progress reports).
    """
    t_start = time.perf_counter()
    x_tr, y_tr, x_te, y_te = check_code_pair(train_codes, train_y, test_codes, test_y)
    if isinstance(runs, bool) or not isinstance(runs, (int, np.integer)) or runs < 1:
        raise MaevaeError(f"probe runs must be a positive integer, got {runs!r}")
    classifiers = list(classifiers)
    for name in classifiers:
        if name not in CLASSIFIERS:
            raise MaevaeError(
                f"unknown probe classifier {name!r}: choose from {', '.join(CLASSIFIERS)}"
            )
    keys = [_budget_key(b) for b in budgets]
    if standardize:
        scaler = StandardScaler().fit(x_tr)
        x_tr, x_te = scaler.transform(x_tr), scaler.transform(x_te)

    # Draw every subset up front so that a bad budget fails before any classifier runs.
    subsets: dict[str, list[np.ndarray]] = {}
    for key in keys:
        if key == "all":
            subsets[key] = [np.arange(y_tr.size)]
        else:
            subsets[key] = [
                label_subset(y_tr, int(key), np.random.default_rng([int(seed), r, int(key)]),
                             balanced=balanced)
                for r in range(int(runs))
            ]

    results: dict[str, dict] = {name: {} for name in classifiers}
    for key in keys:
        for name in classifiers:
            accs, secs, conv = [], [], True
            for r, idx in enumerate(subsets[key]):
                acc, sec, ok = _fit_score(name, x_tr[idx], y_tr[idx], x_te, y_te, int(seed) + r)
                accs.append(acc)
                secs.append(sec)
                conv = conv and ok
            results[name][key] = {
                "budget": key,
                "n_labels": int(subsets[key][0].size),
                "runs": len(subsets[key]),
                "acc_test": summarize_runs(accs),
                "time_s": summarize_runs(secs),
                "converged": conv,
            }
            if on_result is not None:
                on_result(name, key, results[name][key])
    return {
        "protocol": {
            "balanced": bool(balanced),
            "standardize": bool(standardize),
            "runs": int(runs),
            "seed": int(seed),
            "budgets": keys,
            "n_train": int(y_tr.size),
            "n_test": int(y_te.size),
            "n_classes": int(np.unique(y_tr).size),
            "classifiers": {n: repr(make_classifier(n, 10, int(seed))) for n in classifiers},
        },
        "results": results,
        "wall_time_s": time.perf_counter() - t_start,
    }


def synthetic_codes(
    n_train: int = 60000, n_test: int = 10000, dim: int = 32, n_classes: int = 10,
    separation: float = 0.7, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST-like stand-in codes for timing: each class is a mixture of 3 Gaussian blobs.

    Blob centres ~ N(0, separation^2 I); every point adds the same anisotropic unit-scale
    noise (a fixed random D x D mixing matrix / sqrt(D)). With the defaults the probes with
    all labels score about 94-99 %, like real MNIST codes, so support-vector counts (which
    drive SVM time) are realistic. Returns (train_codes, train_y, test_codes, test_y).
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, separation, size=(n_classes, 3, dim))  # [C, 3, D]
    mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)  # [D, D]

    def draw(n):
        y = rng.integers(0, n_classes, n)
        sub = rng.integers(0, 3, n)
        return centres[y, sub] + rng.standard_normal((n, dim)) @ mixing, y

    x_tr, y_tr = draw(n_train)
    x_te, y_te = draw(n_test)
    return x_tr, y_tr, x_te, y_te


def benchmark_all_labels(classifiers: Sequence[str] = CLASSIFIERS, seed: int = 0) -> dict:
    """Seconds (fit + predict) and accuracy of each probe, budget "all", synthetic codes.

    Also records the 1-minute load average before each fit: on a shared machine a load
    above the core count inflates the times.
    """
    import os

    x_tr, y_tr, x_te, y_te = synthetic_codes(seed=seed)
    out = {}
    for name in classifiers:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        acc, sec, ok = _fit_score(name, x_tr, y_tr, x_te, y_te, seed)
        out[name] = {"seconds": round(sec, 1), "acc_test": acc, "converged": ok,
                     "load_avg_before": round(load, 2)}
    return out


if __name__ == "__main__":  # python -m maevae.evaluate.probes --timing
    import json
    import sys

    if "--timing" in sys.argv[1:]:
        print(json.dumps(benchmark_all_labels(), indent=1))
    else:
        print("usage: python -m maevae.evaluate.probes --timing")

