"""The seeded test/val/train split shared by digits and image folders: same indices as before."""

import numpy as np
import pytest
from PIL import Image

from maevae.data import load_dataset
from maevae.data.digits import N_TEST, N_VAL, split_digits
from maevae.data.splits import seeded_holdout, seeded_three_way


def _old_three_way(n, n_test, n_val, seed):
    """The formula digits.py and folder.py each wrote out before seeded_three_way."""
    perm = np.random.default_rng(seed).permutation(n)
    test = np.sort(perm[:n_test])
    val = np.sort(perm[n_test : n_test + n_val])
    train = np.sort(perm[n_test + n_val :])
    return train, val, test


CASES = [(1797, 297, 150, 524287), (1797, 297, 50, 1), (10, 1, 1, 0), (10, 0, 0, 7),
         (1000, 100, 100, 123), (5, 2, 2, 2**31 - 1)]


@pytest.mark.parametrize(("n", "n_test", "n_val", "seed"), CASES)
def test_seeded_three_way_equals_the_old_formula(n, n_test, n_val, seed):
    got = seeded_three_way(n, n_test, n_val, seed)
    for a, b in zip(got, _old_three_way(n, n_test, n_val, seed), strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    assert np.array_equal(np.sort(np.concatenate(got)), np.arange(n))


@pytest.mark.parametrize(("n", "seed", "n_val"), [(1797, 524287, None), (1797, 5, 40),
                                                  (600, 9, None)])
def test_split_digits_unchanged(n, seed, n_val):
    got = split_digits(n, seed, n_val)
    want = _old_three_way(n, N_TEST, N_VAL if n_val is None else n_val, seed)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def test_no_test_part_is_seeded_holdout():
    tr, va, te = seeded_three_way(100, 0, 20, 3)
    rest, hold = seeded_holdout(100, 20, 3)
    assert te.size == 0
    np.testing.assert_array_equal(tr, rest)
    np.testing.assert_array_equal(va, hold)


@pytest.mark.parametrize(("n", "seed", "n_val"), [(20, 524287, None), (20, 11, 3), (13, 2, None)])
def test_folder_split_unchanged(tmp_path, n, seed, n_val):
    for i in range(n):  # image i is filled with the value i: the pixel tells the index
        Image.fromarray(np.full((3, 3), i, dtype=np.uint8)).save(tmp_path / f"img_{i:02d}.png")
    s = load_dataset("folder", tmp_path, seed=seed, n_val=n_val)
    n_test = int(np.floor(n * 0.1 + 0.5))
    n_va = int(np.floor(n * 0.1 + 0.5)) if n_val is None else n_val
    tr, va, te = _old_three_way(n, n_test, n_va, seed)
    for x, idx in ((s.train_x, tr), (s.val_x, va), (s.test_x, te)):
        np.testing.assert_array_equal(x[:, 0, 0, 0], idx)
