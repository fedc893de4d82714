"""data.split=authors: the MAE authors' own MNIST validation split, reproduced exactly.

Their ``experiments/binary_image.py`` calls ``np.random.seed(524287)`` and then, as the first
draw from numpy's global RNG, shuffles ``arange(60000)`` in place; the last 2,000 shuffled
indices are validation and the first 58,000 train. The reference below redoes exactly that
(saving and restoring the global RNG state), independently of the product code, and literal
indices pin the result (printed once by numpy 2.4; legacy RandomState streams are frozen).
"""

from pathlib import Path

import numpy as np
import pytest

from maevae.config import from_dict
from maevae.data import load_dataset
from maevae.data import mnist as mnist_mod
from maevae.data.splits import authors_holdout, split_indices
from maevae.errors import ConfigError, DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_mnist = pytest.mark.skipif(
    not (SHARED / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file(),
    reason="shared MNIST copy not present",
)

# The authors' shuffled order: its first / last 5 validation indices and first 5 train indices.
VAL_FIRST5_SHUFFLED = [47626, 20884, 33621, 36499, 29036]
VAL_LAST5_SHUFFLED = [19118, 44378, 35336, 2832, 7652]
TRAIN_FIRST5_SHUFFLED = [20429, 42409, 15715, 52957, 52649]
# The validation set sorted (the order split_indices returns): smallest and largest 5.
VAL_SMALLEST5 = [12, 26, 35, 37, 107]
VAL_LARGEST5 = [59864, 59866, 59902, 59938, 59958]


def _authors_shuffle() -> np.ndarray:
    """arange(60000) shuffled as the authors' script does, with the global RNG."""
    state = np.random.get_state()
    try:
        np.random.seed(524287)
        index = np.arange(60000)
        np.random.shuffle(index)
    finally:
        np.random.set_state(state)
    return index


def test_reference_shuffle_is_pinned():
    index = _authors_shuffle()
    assert index[-2000:][:5].tolist() == VAL_FIRST5_SHUFFLED
    assert index[-5:].tolist() == VAL_LAST5_SHUFFLED
    assert index[:5].tolist() == TRAIN_FIRST5_SHUFFLED


def test_authors_split_is_the_authors_shuffle():
    tr, va = split_indices(60000, "authors")
    index = _authors_shuffle()
    assert (len(tr), len(va)) == (58000, 2000)
    np.testing.assert_array_equal(va, np.sort(index[-2000:]))
    np.testing.assert_array_equal(tr, np.sort(index[:-2000]))
    assert va[:5].tolist() == VAL_SMALLEST5 and va[-5:].tolist() == VAL_LARGEST5
    assert set(VAL_FIRST5_SHUFFLED + VAL_LAST5_SHUFFLED) <= set(va.tolist())
    assert not set(TRAIN_FIRST5_SHUFFLED) & set(va.tolist())
    assert np.intersect1d(tr, va).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(60000))


def test_authors_split_is_fixed():
    """The run's seed does not move it; n_val=2000 is accepted, nothing else."""
    _, va = split_indices(60000, "authors")
    for seed in (0, 1, 524287):
        np.testing.assert_array_equal(split_indices(60000, "authors", seed=seed)[1], va)
    np.testing.assert_array_equal(split_indices(60000, "authors", n_val=2000)[1], va)
    # not the same set as the default "mae" split (our own default_rng shuffle)
    assert not np.array_equal(split_indices(60000, "mae", seed=524287)[1], va)


def test_authors_split_refuses_other_sizes():
    with pytest.raises(DataError, match=r"60000 training images, but toy has 59999; "
                                        r"use data.split=mae"):
        authors_holdout(59999, what="toy")
    with pytest.raises(DataError, match=r"exactly 2000 images, got data.n_val=400; "
                                        r"remove data.n_val"):
        split_indices(60000, "authors", n_val=400)


@pytest.mark.parametrize("name", ["digits", "folder", "omniglot", "cifar10"])
def test_config_refuses_authors_on_other_datasets(name):
    with pytest.raises(ConfigError, match=rf"data.split='authors' does not apply to "
                                          rf"data.name='{name}'"):
        from_dict({"data": {"name": name, "split": "authors"}})


def test_config_accepts_authors_on_mnist_family():
    for name in ("mnist", "fashion_mnist"):
        assert from_dict({"data": {"name": name, "split": "authors"}}).data.split == "authors"


@needs_mnist
def test_real_mnist_authors_split():
    raw = mnist_mod.load_idx_pair(SHARED, "mnist", download=False)
    (x, y), (tx, _) = raw["train"], raw["test"]
    d = load_dataset("mnist", SHARED, split="authors", download=False)
    index = _authors_shuffle()
    assert d.sizes() == (58000, 2000, 10000)
    np.testing.assert_array_equal(d.val_x, x[np.sort(index[-2000:])])
    np.testing.assert_array_equal(d.val_y, y[np.sort(index[-2000:])])
    np.testing.assert_array_equal(d.train_x, x[np.sort(index[:-2000])])
    np.testing.assert_array_equal(d.test_x, tx)
    np.testing.assert_array_equal(d.val_x[:5], x[VAL_SMALLEST5])
    assert any("authors" in note for note in d.notes)
