import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from maevae.data import load_dataset
from maevae.data import mnist as mnist_mod
from maevae.data.idx import write_idx
from maevae.data.splits import split_indices
from maevae.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RAW = SHARED / "MNIST" / "raw"
needs_mnist = pytest.mark.skipif(
    not (RAW / "train-images-idx3-ubyte.gz").is_file(), reason="shared MNIST copy not present"
)


@pytest.fixture(scope="module")
def mnist_raw():
    return mnist_mod.load_idx_pair(SHARED, "mnist", download=False)


@needs_mnist
def test_real_mnist_loads_and_verifies(mnist_raw):
    (x, y), (tx, ty) = mnist_raw["train"], mnist_raw["test"]
    assert x.shape == (60000, 1, 28, 28) and x.dtype == np.uint8
    assert tx.shape == (10000, 1, 28, 28)
    assert y.shape == (60000,) and y.dtype == np.int64 and ty.shape == (10000,)
    assert set(np.unique(y)) == set(range(10))
    # the well-known first training labels of MNIST
    assert y[:5].tolist() == [5, 0, 4, 1, 9]
    assert ty[:3].tolist() == [7, 2, 1]


@needs_mnist
@pytest.mark.parametrize("split,sizes", [
    ("mae", (58000, 2000, 10000)), ("iwae", (59600, 400, 10000)),
    ("classic", (50000, 10000, 10000)),
])
def test_real_mnist_split_sizes(split, sizes, mnist_raw):
    d = load_dataset("mnist", SHARED, split=split, download=False)
    assert d.sizes() == sizes and d.image_shape == (1, 28, 28) and d.name == "mnist"
    x, y = mnist_raw["train"]
    if split == "iwae":  # the LAST 400 training images, in order
        np.testing.assert_array_equal(d.val_x, x[-400:])
        np.testing.assert_array_equal(d.train_x, x[:59600])
    elif split == "classic":
        np.testing.assert_array_equal(d.val_y, y[50000:])
    else:  # seeded: not the tail
        assert not np.array_equal(d.val_y, y[-2000:])
    np.testing.assert_array_equal(d.test_x, mnist_raw["test"][0])


def test_split_indices_generic():
    tr, va = split_indices(100, "mae", seed=1, n_val=10)
    assert len(tr) == 90 and len(va) == 10
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(100))
    tr2, va2 = split_indices(100, "mae", seed=1, n_val=10)
    np.testing.assert_array_equal(va, va2)
    _, va3 = split_indices(100, "mae", seed=2, n_val=10)
    assert not np.array_equal(va, va3)
    tr, va = split_indices(100, "iwae", n_val=7)
    assert va.tolist() == list(range(93, 100)) and tr.tolist() == list(range(93))
    tr, va = split_indices(60000, "classic")
    assert (len(tr), len(va), va[0]) == (50000, 10000, 50000)
    with pytest.raises(DataError, match="allowed: mae, iwae, classic"):
        split_indices(100, "random")
    with pytest.raises(DataError, match="n_val"):
        split_indices(100, "mae", n_val=100)
    with pytest.raises(DataError, match="n_val"):
        split_indices(100, "mae", n_val=-1)


def _copy_mnist(dst_root: Path) -> Path:
    raw = dst_root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in RAW.iterdir():
        shutil.copy(f, raw / f.name)
    return raw


@needs_mnist
def test_flipped_byte_in_plain_copy_fails_checksum(tmp_path):
    raw = _copy_mnist(tmp_path)
    content = bytearray(gzip.decompress((raw / "t10k-images-idx3-ubyte.gz").read_bytes()))
    content[16 + 5000] ^= 0xFF  # one pixel: structure stays valid
    (raw / "t10k-images-idx3-ubyte.gz").unlink()
    (raw / "t10k-images-idx3-ubyte").write_bytes(bytes(content))
    with pytest.raises(DataError) as e:
        load_dataset("mnist", tmp_path, download=False)
    msg = str(e.value)
    assert "checksum" in msg and str(raw / "t10k-images-idx3-ubyte") in msg and "\n" not in msg


@needs_mnist
def test_flipped_byte_in_gzip_copy_is_refused(tmp_path):
    raw = _copy_mnist(tmp_path)
    path = raw / "train-labels-idx1-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as e:
        mnist_mod.load_idx_pair(tmp_path, "mnist", download=False)
    assert str(path) in str(e.value) and "checksum" in str(e.value)


def test_missing_files_without_download(tmp_path):
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    with pytest.raises(DataError, match="train-images-idx3-ubyte") as e:
        load_dataset("mnist", tmp_path, download=False)
    assert str(tmp_path / "MNIST" / "raw") in str(e.value)


def _fake_mnist(raw: Path, n_train=12, n_test=5, gz=True) -> dict:
    rng = np.random.default_rng(3)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    raw.mkdir(parents=True, exist_ok=True)
    md5 = {}
    for stem, a in arrays.items():
        p = write_idx(raw / (stem + (".gz" if gz else "")), a)
        content = gzip.decompress(p.read_bytes()) if gz else p.read_bytes()
        md5[stem] = hashlib.md5(content).hexdigest()
    return {"arrays": arrays, "md5": md5}


def test_fashion_mnist_layout_structure_verified(tmp_path, monkeypatch):
    fx = _fake_mnist(tmp_path / "FashionMNIST" / "raw", gz=False)
    monkeypatch.setattr(mnist_mod, "EXPECTED_COUNTS", {"train": 12, "test": 5})
    d = load_dataset("fashion-mnist", tmp_path, split="iwae", n_val=2, download=False)
    assert d.name == "fashion_mnist" and d.sizes() == (10, 2, 5)
    np.testing.assert_array_equal(d.val_x[:, 0], fx["arrays"]["train-images-idx3-ubyte"][-2:])
    np.testing.assert_array_equal(d.test_y, fx["arrays"]["t10k-labels-idx1-ubyte"])
    assert "structure-verified" in d.notes[0]
    # wrong count is caught structurally
    monkeypatch.setattr(mnist_mod, "EXPECTED_COUNTS", {"train": 60000, "test": 10000})
    with pytest.raises(DataError, match="expected 60000"):
        load_dataset("fashion_mnist", tmp_path, download=False)


def test_mismatched_label_count(tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    fx = _fake_mnist(raw)
    write_idx(raw / "train-labels-idx1-ubyte.gz", np.zeros(11, np.uint8))
    fx["md5"]["train-labels-idx1-ubyte"] = hashlib.md5(
        gzip.decompress((raw / "train-labels-idx1-ubyte.gz").read_bytes())).hexdigest()
    monkeypatch.setattr(mnist_mod, "MNIST_MD5", fx["md5"])
    with pytest.raises(DataError, match="12 images but .* 11 labels"):
        load_dataset("mnist", tmp_path, download=False, n_val=2)


def test_checksum_tables_cover_exactly_the_four_files():
    """MNIST_MD5 (content) and FASHION_MNIST_GZ_MD5 (.gz wrappers) are different checksums of
    the same four files: keyed by exactly STEMS, all distinct."""
    files = [s for part in ("train", "test") for s in mnist_mod.STEMS[part]]
    for table in (mnist_mod.MNIST_MD5, mnist_mod.FASHION_MNIST_GZ_MD5):
        assert list(table) == files
        assert all(len(h) == 32 and int(h, 16) >= 0 for h in table.values())
    hashes = [*mnist_mod.MNIST_MD5.values(), *mnist_mod.FASHION_MNIST_GZ_MD5.values()]
    assert len(set(hashes)) == 8
