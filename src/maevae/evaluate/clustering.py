"""Unsupervised clustering of latent codes (paper §4.1.2 and Table 2, left; SPEC §5.2).

Protocol of the paper: K-means with K in {10, 20, 30} on the MNIST latent codes; each cluster
takes the label of the **training sample nearest (Euclidean, latent space) to its centroid**;
accuracy is the fraction of scored points whose cluster label equals their true label; the
mean over 5 runs (different K-means seeds) is reported.

Choices made here (SPEC §6 row 21 leaves them open):

* K-means is scikit-learn's Lloyd algorithm with k-means++ seeding and ``n_init=10``
  restarts (the paper cites Hartigan & Wong, which scikit-learn does not implement; both
  minimise the same objective). No feature standardisation.
* K-means is **fit on the training codes** and scored on the test codes (``acc_test``, the
  number comparable to Table 2); ``acc_train`` scores the training codes that were clustered.
* For comparison the common alternatives are reported too: majority-vote labelling (each
  cluster takes the most frequent training label among its training members; ties go to
  the smallest label), and, for K = number of classes, Hungarian accuracy (the best
  one-to-one cluster-to-class map, chosen on the scored set itself, so it is optimistic).
  NMI and ARI compare the test assignments with the test labels.
* Run ``r`` uses K-means ``random_state = seed + r``. ``std`` over runs is the sample
  standard deviation (ddof=1); it is 0.0 for a single run.

Cost: one K-means fit (``n_init=10``) on 60,000 x 32 codes took 6-36 s on 2 CPU cores in
our measurements (fewer Lloyd iterations when the codes are well clustered; more on a
loaded machine), so the default suite (3 values of K x 5 runs = 15 fits) takes roughly
2-9 minutes; lower ``n_init`` or ``runs`` for quick looks.

Output of :func:`clustering_suite` (JSON-serialisable: only str keys, float/int/str/list)::

    {
      "protocol": {"algorithm": "lloyd", "init": "k-means++", "n_init": 10,
                   "labelling": "nearest_train_sample_to_centroid", "fit_on": "train",
                   "scored_on": "test", "standardize": False, "runs": 5, "seeds": [0, ...],
                   "ks": [10, 20, 30], "n_train": 60000, "n_test": 10000, "n_classes": 10},
      "kmeans": {
        "10": {"acc_test": STAT, "acc_train": STAT, "acc_test_majority": STAT,
               "acc_train_majority": STAT, "nmi_test": STAT, "ari_test": STAT,
               "inertia": STAT, "wall_time_s": float},
        "20": {...}, "30": {...}
      },
      "hungarian": {"k": 10, "acc_test": STAT, "acc_train": STAT},
      "wall_time_s": float
    }

where ``STAT = {"mean": float, "std": float, "values": [float, ...]}`` (one value per run)
and accuracies are fractions in [0, 1] (the report multiplies by 100 for the paper's %).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import (
    adjusted_rand_score,
    normalized_mutual_info_score,
    pairwise_distances_argmin,
)
from sklearn.metrics.cluster import contingency_matrix

from maevae.errors import MaevaeError

__all__ = [
    "check_code_pair",
    "check_codes",
    "clustering_suite",
    "hungarian_accuracy",
    "kmeans_cluster_accuracy",
    "summarize_runs",
]


def summarize_runs(values: Sequence[float]) -> dict:
    """``{"mean", "std", "values"}`` of per-run numbers; std is ddof=1 (0.0 for one run)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise MaevaeError("no runs to summarise: use runs >= 1")
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "values": [float(v) for v in arr]}


def check_codes(codes, labels, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate a ``[N, D]`` code matrix and its ``[N]`` labels; return float64 / label arrays."""
    codes = np.asarray(codes)
    labels = np.asarray(labels)
    if codes.ndim != 2:
        raise MaevaeError(
            f"{name} codes must be a 2-D array [N, D], got shape {codes.shape}: "
            "flatten each latent code to a vector first"
        )
    if not np.issubdtype(codes.dtype, np.number):
        raise MaevaeError(f"{name} codes must be numeric, got dtype {codes.dtype}")
    codes = codes.astype(np.float64, copy=False)
    if labels.ndim != 1 or labels.shape[0] != codes.shape[0]:
        raise MaevaeError(
            f"{name} labels must be a 1-D array with one label per code "
            f"({codes.shape[0]}), got shape {labels.shape}"
        )
    if codes.shape[0] == 0:
        raise MaevaeError(f"{name} codes are empty: pass at least one encoded example")
    if not np.all(np.isfinite(codes)):
        raise MaevaeError(
            f"{name} codes contain NaN or inf: check the encoder outputs of this checkpoint"
        )
    return codes, labels


def check_code_pair(train_codes, train_labels, test_codes, test_labels) -> tuple:
    """:func:`check_codes` on a training and a test set that must share their dimension."""
    train_codes, train_labels = check_codes(train_codes, train_labels, "training")
    test_codes, test_labels = check_codes(test_codes, test_labels, "test")
    if train_codes.shape[1] != test_codes.shape[1]:
        raise MaevaeError(
            f"training codes have {train_codes.shape[1]} dims but test codes have "
            f"{test_codes.shape[1]}: encode both sets with the same model"
        )
    return train_codes, train_labels, test_codes, test_labels


def _cluster_labels_nearest(centroids: np.ndarray, train_codes, train_labels) -> np.ndarray:
    """Label of the training sample nearest (Euclidean) to each centroid ([K])."""
    nearest = pairwise_distances_argmin(centroids, train_codes)  # [K]; ties -> lowest index
    return train_labels[nearest]


def _cluster_labels_majority(
    assign: np.ndarray, train_labels: np.ndarray, k: int, fallback: np.ndarray
) -> np.ndarray:
    """Most frequent training label per cluster ([K]); ties -> smallest label.

    A cluster without training members (cannot happen with scikit-learn's K-means, which
    relocates empty clusters) keeps its ``fallback`` label.
    """
    classes, y = np.unique(train_labels, return_inverse=True)
    counts = np.zeros((k, classes.size), dtype=np.int64)  # [K, C]
    np.add.at(counts, (assign, y), 1)
    out = classes[counts.argmax(axis=1)]  # argmax picks the first (smallest) label on ties
    empty = counts.sum(axis=1) == 0
    out[empty] = fallback[empty]
    return out


def hungarian_accuracy(assign, labels) -> float:
    """Accuracy under the best one-to-one map from clusters to classes.

    ``assign`` [N] cluster ids, ``labels`` [N] classes. The map maximises the number of
    correctly labelled points (``scipy.optimize.linear_sum_assignment`` on the contingency
    table). Meant for K = number of classes; with more clusters than classes the unmatched
    clusters count as wrong, with fewer the unmatched classes do.
    """
    assign = np.asarray(assign)
    labels = np.asarray(labels)
    if assign.shape != labels.shape or assign.ndim != 1 or assign.size == 0:
        raise MaevaeError(
            f"assignments {assign.shape} and labels {labels.shape} must be non-empty 1-D "
            "arrays of the same length"
        )
    table = contingency_matrix(labels, assign)  # [C, K] counts
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / labels.size)


def kmeans_cluster_accuracy(
    train_codes,
    train_labels,
    test_codes,
    test_labels,
    k: int,
    seed: int,
    n_init: int = 10,
) -> dict:
    """One K-means run: fit on ``train_codes`` [N, D], score train and test.

    Returns ``{"k", "seed", "acc_test", "acc_train", "acc_test_majority",
    "acc_train_majority", "nmi_test", "ari_test", "inertia", "n_iter"}``, accuracies as
    fractions; when ``k`` equals the number of training classes also ``acc_test_hungarian``
    and ``acc_train_hungarian``.
    """
    train_codes, train_labels, test_codes, test_labels = check_code_pair(
        train_codes, train_labels, test_codes, test_labels)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise MaevaeError(f"K-means needs a positive integer K, got {k!r}")
    if k > train_codes.shape[0]:
        raise MaevaeError(
            f"K={k} clusters but only {train_codes.shape[0]} training codes: "
            "use a smaller K or encode more training images"
        )
    km = KMeans(
        n_clusters=int(k), init="k-means++", n_init=int(n_init), algorithm="lloyd",
        random_state=int(seed),
    )
    train_assign = km.fit_predict(train_codes)  # [N_train]
    test_assign = km.predict(test_codes)  # [N_test]
    nearest = _cluster_labels_nearest(km.cluster_centers_, train_codes, train_labels)  # [K]
    majority = _cluster_labels_majority(train_assign, train_labels, int(k), nearest)  # [K]
    out = {
        "k": int(k),
        "seed": int(seed),
        "acc_test": float(np.mean(nearest[test_assign] == test_labels)),
        "acc_train": float(np.mean(nearest[train_assign] == train_labels)),
        "acc_test_majority": float(np.mean(majority[test_assign] == test_labels)),
        "acc_train_majority": float(np.mean(majority[train_assign] == train_labels)),
        "nmi_test": float(normalized_mutual_info_score(test_labels, test_assign)),
        "ari_test": float(adjusted_rand_score(test_labels, test_assign)),
        "inertia": float(km.inertia_),
        "n_iter": int(km.n_iter_),
    }
    if int(k) == np.unique(train_labels).size:
        out["acc_test_hungarian"] = hungarian_accuracy(test_assign, test_labels)
        out["acc_train_hungarian"] = hungarian_accuracy(train_assign, train_labels)
    return out


_RUN_METRICS = (
    "acc_test", "acc_train", "acc_test_majority", "acc_train_majority", "nmi_test",
    "ari_test", "inertia",
)


def clustering_suite(
    train_codes,
    train_y,
    test_codes,
    test_y,
    ks: Sequence[int] = (10, 20, 30),
    runs: int = 5,
    seed: int = 0,
    n_init: int = 10,
    on_run: Callable[[dict], None] | None = None,
) -> dict:
    """K-means for every K in ``ks`` over ``runs`` seeds; layout in the module docstring.

    The Hungarian block reuses the K = n_classes runs when that K is in ``ks`` and otherwise
    runs K-means with K = n_classes (same seeds) just for it. ``on_run``, when given, is
    called with each run's :func:`kmeans_cluster_accuracy` result as soon as it is done
    (for progress reports).
    """
    t0 = time.perf_counter()
    train_codes, train_y = check_codes(train_codes, train_y, "training")
    test_codes, test_y = check_codes(test_codes, test_y, "test")
    if isinstance(runs, bool) or not isinstance(runs, (int, np.integer)) or runs < 1:
        raise MaevaeError(f"clustering runs must be a positive integer, got {runs!r}")
    ks = [int(k) for k in ks]
    if not ks:
        raise MaevaeError("no K given for K-means: pass e.g. ks=(10, 20, 30)")
    too_big = [k for k in ks if k > train_codes.shape[0]]
    if too_big:
        raise MaevaeError(
            f"K={too_big[0]} clusters but only {train_codes.shape[0]} training codes: "
            "use a smaller K or encode more training images"
        )
    n_classes = int(np.unique(train_y).size)
    seeds = [int(seed) + r for r in range(int(runs))]

    def run_k(k: int) -> list[dict]:
        out = []
        for s in seeds:
            out.append(
                kmeans_cluster_accuracy(train_codes, train_y, test_codes, test_y, k, s, n_init)
            )
            if on_run is not None:
                on_run(out[-1])
        return out

    kmeans: dict[str, dict] = {}
    per_k_runs: dict[int, list[dict]] = {}
    for k in ks:
        tk = time.perf_counter()
        results = run_k(k)
        per_k_runs[k] = results
        entry = {m: summarize_runs([r[m] for r in results]) for m in _RUN_METRICS}
        entry["wall_time_s"] = time.perf_counter() - tk
        kmeans[str(k)] = entry
    hung_runs = per_k_runs.get(n_classes)
    if hung_runs is None and n_classes <= train_codes.shape[0]:
        hung_runs = run_k(n_classes)
    out = {
        "protocol": {
            "algorithm": "lloyd",
            "init": "k-means++",
            "n_init": int(n_init),
            "labelling": "nearest_train_sample_to_centroid",
            "fit_on": "train",
            "scored_on": "test",
            "standardize": False,
            "runs": int(runs),
            "seeds": seeds,
            "ks": ks,
            "n_train": int(train_codes.shape[0]),
            "n_test": int(test_codes.shape[0]),
            "n_classes": n_classes,
        },
        "kmeans": kmeans,
    }
    if hung_runs is not None:
        out["hungarian"] = {
            "k": n_classes,
            "acc_test": summarize_runs([r["acc_test_hungarian"] for r in hung_runs]),
            "acc_train": summarize_runs([r["acc_train_hungarian"] for r in hung_runs]),
        }
    out["wall_time_s"] = time.perf_counter() - t0
    return out
