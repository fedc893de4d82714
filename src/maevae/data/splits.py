"""Train / validation index splits.

MNIST-style switches (SPEC §3.1, §4.1):

* ``"mae"``     -- the authors' code: shuffle the training set with a seeded RNG and hold out
  ``n_val`` (default 2,000) images for validation: 58,000 / 2,000 / 10,000 on MNIST.
  (The exact permutation of the authors' torch/numpy RNG state is not reproduced; ours is
  ``numpy.random.default_rng(seed).permutation(n)``, first ``n_val`` -> validation.)
* ``"iwae"``    -- Burda et al.: no shuffle, the LAST ``n_val`` (default 400) images are
  validation: 59,600 / 400 / 10,000.
* ``"classic"`` -- the ``mnist.pkl.gz`` convention: first 50,000 train, last ``n_val``
  (default 10,000) validation.

Every function returns ``(train_idx, val_idx)`` as sorted int64 index arrays into the
original training set, so subsets keep the file order; :func:`seeded_three_way` (datasets
without their own test set: digits, image folders) returns ``(train_idx, val_idx, test_idx)``.
"""

from __future__ import annotations

import numpy as np

from maevae.errors import DataError

__all__ = ["MNIST_SPLITS", "seeded_holdout", "seeded_three_way", "split_indices", "tail_holdout"]

MNIST_SPLITS: dict[str, int] = {"mae": 2000, "iwae": 400, "classic": 10000}


def _check_n_val(n: int, n_val: int, what: str) -> None:
    if isinstance(n_val, bool) or not isinstance(n_val, int | np.integer) or n_val < 0:
        raise DataError(f"n_val must be a non-negative integer, got {n_val!r}; fix data.n_val")
    if n_val >= n:
        raise DataError(
            f"n_val={n_val} leaves no training images: {what} has only {n} training images; "
            "set data.n_val lower"
        )


def seeded_holdout(n: int, n_holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle ``range(n)`` with ``default_rng(seed)``; the first ``n_holdout`` are held out.

    Returns ``(rest_idx, holdout_idx)``, both sorted.
    """
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_holdout:]), np.sort(perm[:n_holdout])


def seeded_three_way(n: int, n_test: int, n_val: int, seed: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle ``range(n)`` with ``default_rng(seed)``: the first ``n_test`` are the test set,
    the next ``n_val`` the validation set, the rest train.

    Returns ``(train_idx, val_idx, test_idx)``, each sorted. The caller checks the sizes.
    """
    perm = np.random.default_rng(seed).permutation(n)
    return (np.sort(perm[n_test + n_val :]), np.sort(perm[n_test : n_test + n_val]),
            np.sort(perm[:n_test]))


def tail_holdout(n: int, n_holdout: int) -> tuple[np.ndarray, np.ndarray]:
    """No shuffle: the last ``n_holdout`` indices are held out."""
    idx = np.arange(n, dtype=np.int64)
    return idx[: n - n_holdout], idx[n - n_holdout :]


def split_indices(n: int, split: str = "mae", *, seed: int = 524287, n_val: int | None = None,
                  what: str = "the dataset") -> tuple[np.ndarray, np.ndarray]:
    """MNIST-style split of ``n`` training images into (train_idx, val_idx).

    ``n_val`` overrides the split's default size (``MNIST_SPLITS``); works for any ``n``.
    """
    if split not in MNIST_SPLITS:
        raise DataError(
            f"unknown split {split!r} for {what}; allowed: {', '.join(MNIST_SPLITS)}"
        )
    if n_val is None:
        n_val = MNIST_SPLITS[split]
    _check_n_val(n, n_val, what)
    if split == "mae":
        return seeded_holdout(n, n_val, seed)
    return tail_holdout(n, n_val)
