"""Train / validation index splits.

MNIST-style switches (SPEC §3.1, §4.1):

* ``"mae"``     -- the authors' sizes with our own seeded shuffle: hold out ``n_val``
  (default 2,000) images for validation, 58,000 / 2,000 / 10,000 on MNIST. The shuffle is
  ``numpy.random.default_rng(seed).permutation(n)``, its first ``n_val`` -> validation, so it
  follows the run's ``seed`` but is NOT the authors' permutation.
* ``"authors"`` -- the authors' exact MNIST split (``experiments/binary_image.py``): right after
  ``np.random.seed(524287)`` the index array ``arange(60000)`` is shuffled in place with the
  legacy global RNG; the LAST 2,000 shuffled indices are validation, the first 58,000 train.
  That permutation is ``numpy.random.RandomState(524287).permutation(60000)`` (legacy
  ``RandomState`` streams are frozen by numpy, so it is reproducible on any numpy version).
  Fixed: it ignores the run's ``seed``, and takes only a 60,000-image training set and
  ``n_val`` unset or 2,000. Returned sorted like every split: the same sets as the authors',
  in file order (their loop reshuffles the training indices every epoch anyway).
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

__all__ = ["AUTHORS_N_TRAIN", "AUTHORS_SEED", "MNIST_SPLITS", "authors_holdout", "seeded_holdout",
           "seeded_three_way", "split_indices", "tail_holdout"]

MNIST_SPLITS: dict[str, int] = {"mae": 2000, "iwae": 400, "classic": 10000, "authors": 2000}

AUTHORS_SEED = 524287  # the authors' --seed default, given to np.random.seed
AUTHORS_N_TRAIN = 60000  # the MNIST training set their split is drawn from


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


def authors_holdout(n: int, n_val: int | None = None, what: str = "the dataset"
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The authors' MNIST split: ``RandomState(524287).permutation(60000)``, last 2,000 held out.

    Returns ``(train_idx, val_idx)``, both sorted (58,000 and 2,000 indices). Raises
    :class:`DataError` unless ``n`` is 60,000 and ``n_val`` is ``None`` or 2,000.
    """
    n_auth = MNIST_SPLITS["authors"]
    if n != AUTHORS_N_TRAIN:
        raise DataError(
            f"split 'authors' is the MAE authors' split of MNIST's {AUTHORS_N_TRAIN} training "
            f"images, but {what} has {n}; use data.split=mae"
        )
    if n_val is not None and n_val != n_auth:
        raise DataError(
            f"split 'authors' holds out exactly {n_auth} images, got data.n_val={n_val}; "
            "remove data.n_val or use data.split=mae"
        )
    perm = np.random.RandomState(AUTHORS_SEED).permutation(n)
    return np.sort(perm[: n - n_auth]), np.sort(perm[n - n_auth :])


def tail_holdout(n: int, n_holdout: int) -> tuple[np.ndarray, np.ndarray]:
    """No shuffle: the last ``n_holdout`` indices are held out."""
    idx = np.arange(n, dtype=np.int64)
    return idx[: n - n_holdout], idx[n - n_holdout :]


def split_indices(n: int, split: str = "mae", *, seed: int = 524287, n_val: int | None = None,
                  what: str = "the dataset") -> tuple[np.ndarray, np.ndarray]:
    """MNIST-style split of ``n`` training images into (train_idx, val_idx).

    ``n_val`` overrides the split's default size (``MNIST_SPLITS``); works for any ``n``
    except with ``split="authors"`` (:func:`authors_holdout`: 60,000 images, ``seed`` unused).
    """
    if split not in MNIST_SPLITS:
        raise DataError(
            f"unknown split {split!r} for {what}; allowed: {', '.join(MNIST_SPLITS)}"
        )
    if split == "authors":
        return authors_holdout(n, n_val, what)
    if n_val is None:
        n_val = MNIST_SPLITS[split]
    _check_n_val(n, n_val, what)
    if split == "mae":
        return seeded_holdout(n, n_val, seed)
    return tail_holdout(n, n_val)
