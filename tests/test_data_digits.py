import numpy as np
import pytest
from sklearn.datasets import load_digits

from maevae.data import load_dataset
from maevae.data.digits import split_digits
from maevae.errors import DataError


def test_digits_shapes_values_and_split(tmp_path, monkeypatch):
    monkeypatch.setenv("MAEVAE_DATA", str(tmp_path / "does-not-exist"))  # no root needed
    d = load_dataset("digits")
    assert d.name == "digits" and d.image_shape == (1, 8, 8)
    assert d.sizes() == (1350, 150, 297)
    for x, y in ((d.train_x, d.train_y), (d.val_x, d.val_y), (d.test_x, d.test_y)):
        assert x.dtype == np.uint8 and y.dtype == np.int64 and len(x) == len(y)
    allx = np.concatenate([d.train_x, d.val_x, d.test_x])
    assert allx.min() == 0 and allx.max() == 255
    # values are exactly round(v * 255 / 16) of scikit-learn's images, same multiset of images
    ref = load_digits()
    expect = np.rint(ref.images * 255 / 16).astype(np.uint8)
    assert set(np.unique(allx)) <= set(np.unique(expect))
    tr, va, te = split_digits(1797, 524287)
    np.testing.assert_array_equal(d.test_x[:, 0], expect[te])
    np.testing.assert_array_equal(d.val_y, ref.target[va])
    np.testing.assert_array_equal(d.train_x[:, 0], expect[tr])
    assert np.array_equal(np.sort(np.concatenate([tr, va, te])), np.arange(1797))


def test_digits_seeded():
    a = load_dataset("digits", seed=1)
    b = load_dataset("digits", seed=1)
    c = load_dataset("digits", seed=2)
    np.testing.assert_array_equal(a.test_x, b.test_x)
    assert not np.array_equal(a.test_x, c.test_x)
    assert load_dataset("digits", n_val=50).sizes() == (1450, 50, 297)
    with pytest.raises(DataError, match="no training images"):
        load_dataset("digits", n_val=1500)
    with pytest.raises(DataError, match="allowed: mae"):
        load_dataset("digits", split="iwae")


def test_digits_read_without_scikit_learn_equal_load_digits(monkeypatch):
    """The start-up shortcut (reading scikit-learn's digits.csv.gz without importing it) gives
    exactly load_digits()'s images and targets, and the fallback gives the same arrays."""
    from maevae.data import digits

    ref = load_digits()
    images, target = digits._bundled_digits()
    np.testing.assert_array_equal(images, ref.images)
    np.testing.assert_array_equal(target, ref.target)
    fast = digits.load_digits_arrays()
    monkeypatch.setattr(digits, "_bundled_digits", lambda: None)
    slow = digits.load_digits_arrays()
    for a, b in zip(fast, slow):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("content", [b"not gzip", "1,2,3\n", "\n".join(["17," * 64 + "1"] * 1797)])
def test_an_unexpected_digits_file_falls_back_to_load_digits(tmp_path, monkeypatch, content):
    import gzip
    import types

    from maevae.data import digits

    data = tmp_path / "sklearn" / "datasets" / "data"
    data.mkdir(parents=True)
    raw = content if isinstance(content, bytes) else gzip.compress(content.encode())
    (data / "digits.csv.gz").write_bytes(raw)
    spec = types.SimpleNamespace(submodule_search_locations=[str(tmp_path / "sklearn")])
    monkeypatch.setattr(digits.importlib.util, "find_spec", lambda name: spec)
    assert digits._bundled_digits() is None  # then load_digits_arrays() asks scikit-learn
    monkeypatch.setattr(digits.importlib.util, "find_spec", lambda name: None)
    assert digits._bundled_digits() is None
