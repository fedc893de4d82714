"""scikit-learn's 8x8 handwritten digits (1,797 images, bundled with scikit-learn: no download).

Pixel values 0..16 are mapped to uint8 by ``round(v * 255 / 16)``; images are [N, 1, 8, 8].

Split (seeded, ``numpy.random.default_rng(seed).permutation(1797)``): the first 297 permuted
indices (about 1/6) are the test set, the next 150 the validation set, the remaining 1,350 the
training set. Each part keeps the original order (sorted indices).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from maevae.data.splits import seeded_three_way
from maevae.errors import DataError

__all__ = ["N_TEST", "N_VAL", "load_digits_arrays", "split_digits"]

N_TEST = 297
N_VAL = 150


N_DIGITS = 1797


def _bundled_digits() -> tuple[np.ndarray, np.ndarray] | None:
    """``(images float [N, 8, 8], targets [N])`` read straight from the ``digits.csv.gz`` that
    scikit-learn ships, without importing scikit-learn (``sklearn.datasets`` takes ~1.5 s to
    import: a third of a small run's start-up); None where the file is not where scikit-learn
    keeps it or is not the 1,797 × 65 table of 0..16 values (then ``load_digits`` reads it)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    except (OSError, ValueError, EOFError):
        return None
    if table.shape != (N_DIGITS, 65) or table.min() < 0 or table.max() > 16 \
            or not np.array_equal(table, np.rint(table)):
        return None
    return table[:, :64].reshape(-1, 8, 8), table[:, 64]  # [N, 65] -> [N, 8, 8], [N]


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8×8 digits as ``(x uint8 [N, 1, 8, 8], y int64 [N])``, the
    intensities 0..16 scaled to 0..255 and rounded."""
    bundled = _bundled_digits()
    if bundled is not None:
        images, target = bundled
    else:
        try:
            from sklearn.datasets import load_digits
        except ImportError:  # pragma: no cover - scikit-learn is a dependency
            raise DataError(
                "the digits dataset needs scikit-learn; install it with `pip install scikit-learn`"
            ) from None
        d = load_digits()
        images, target = d.images, d.target
    x = np.rint(np.asarray(images, dtype=np.float64) * (255.0 / 16.0))
    x = np.clip(x, 0, 255).astype(np.uint8)[:, None, :, :]
    y = np.asarray(target, dtype=np.int64)
    return x, y


def split_digits(n: int, seed: int, n_val: int | None = None, n_test: int = N_TEST
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded three-way split of ``n`` digits: ``(train_idx, val_idx, test_idx)`` with
    ``n_test`` test and ``n_val`` (default :data:`N_VAL`) validation images."""
    n_val = N_VAL if n_val is None else n_val
    if n_val < 0 or n_test < 0 or n_val + n_test >= n:
        raise DataError(
            f"digits has {n} images: n_val={n_val} + n_test={n_test} leaves no training images; "
            "set data.n_val lower"
        )
    return seeded_three_way(n, n_test, n_val, seed)
