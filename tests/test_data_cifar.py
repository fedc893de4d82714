import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from maevae.data import load_dataset
from maevae.data.cifar import _safe_extract, read_batch, safe_load_pickle
from maevae.errors import DataError

FOLDER = "cifar-10-batches-py"


def _write_batches(root: Path, n_per_batch=6, n_test=4, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else n_per_batch
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        d = {b"batch_label": f"batch {name}".encode(), b"labels": labels, b"data": data,
             b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(d, f)
        written[name] = (data, labels)
    return written


def test_reader_reproduces_batches_exactly(tmp_path):
    w = _write_batches(tmp_path)
    s = load_dataset("cifar10", tmp_path, n_val=0, download=False)
    assert s.name == "cifar10" and s.image_shape == (3, 32, 32) and s.sizes() == (30, 0, 4)
    data = np.concatenate([w[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = sum((w[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    np.testing.assert_array_equal(s.train_x.reshape(30, 3072), data)
    np.testing.assert_array_equal(s.train_y, labels)
    # channel planes: red = first 1024 bytes of each row, row-major 32x32
    np.testing.assert_array_equal(s.train_x[3, 0], data[3, :1024].reshape(32, 32))
    np.testing.assert_array_equal(s.train_x[3, 2, 1, 5], data[3, 2048 + 32 + 5])
    np.testing.assert_array_equal(s.test_x.reshape(4, 3072), w["test_batch"][0])
    assert s.test_y.dtype == np.int64 and s.test_y.tolist() == w["test_batch"][1]


def test_split_sizes_and_seed(tmp_path):
    _write_batches(tmp_path)
    s = load_dataset("cifar10", tmp_path, n_val=5, seed=3)
    assert s.sizes() == (25, 5, 4)
    full = load_dataset("cifar10", tmp_path, n_val=0)
    both = np.concatenate([s.train_x, s.val_x]).reshape(30, -1)
    assert sorted(map(bytes, both)) == sorted(map(bytes, full.train_x.reshape(30, -1)))
    t = load_dataset("cifar10", tmp_path, n_val=5, seed=4)
    assert not np.array_equal(s.val_x, t.val_x)
    with pytest.raises(DataError, match="n_val"):
        load_dataset("cifar10", tmp_path)  # default 2,000 > 30 images
    with pytest.raises(DataError, match="allowed: mae"):
        load_dataset("cifar10", tmp_path, split="iwae", n_val=1)


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class _EvalEvil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (eval, (f"open({str(self.target)!r}, 'w').close()",))


@pytest.mark.parametrize("evil", [_Evil, _EvalEvil])
def test_malicious_pickle_refused_without_side_effect(tmp_path, evil):
    _write_batches(tmp_path)
    side = tmp_path / "pwned"
    bad = tmp_path / FOLDER / "data_batch_3"
    with open(bad, "wb") as f:
        pickle.dump({b"data": evil(side), b"labels": []}, f)
    assert b"system" in bad.read_bytes() or b"eval" in bad.read_bytes()  # payload is in there
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", tmp_path, n_val=1)
    assert str(bad) in str(e.value) and "not allowed" in str(e.value)
    assert not side.exists()


def test_other_globals_refused(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(pickle.dumps({b"data": np.int64(3)}))  # numpy scalar: multiarray.scalar
    with pytest.raises(DataError, match="not allowed"):
        safe_load_pickle(p)
    p.write_bytes(pickle.dumps(np.zeros(3), protocol=2))  # _codecs.encode under protocol 2
    with pytest.raises(DataError, match="not allowed"):
        safe_load_pickle(p)


def test_bad_batch_contents(tmp_path):
    p = tmp_path / "b"
    p.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}))
    with pytest.raises(DataError, match="3072"):
        read_batch(p)
    p.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}))
    with pytest.raises(DataError, match="labels"):
        read_batch(p)
    p.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(DataError, match="expected a dict"):
        read_batch(p)
    p.write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match=str(p)):
        read_batch(p)


def _py2_batch_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """The byte layout Python 2's cPickle (protocol 2) gives a CIFAR batch: str keys and an
    ndarray rebuilt by numpy.core.multiarray._reconstruct with its raw bytes as a py2 str."""
    n = data.shape[0]

    def s(b: bytes) -> bytes:  # SHORT_BINSTRING (a Python 2 str)
        return b"U" + bytes([len(b)]) + b

    out = b"\x80\x02}(" + s(b"data")
    out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + s(b"b")
    out += b"\x87R(K\x01" + b"K" + bytes([n]) + b"M" + struct.pack("<H", 3072) + b"\x86"
    out += b"cnumpy\ndtype\n" + s(b"u1") + b"K\x00K\x01\x87R"
    out += b"(K\x03" + s(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    raw = data.tobytes()
    out += b"\x89" + b"T" + struct.pack("<I", len(raw)) + raw + b"tb"
    out += s(b"labels") + b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    out += b"u."
    return out


def test_python2_style_batch(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
    p = tmp_path / "py2_batch"
    p.write_bytes(_py2_batch_pickle(data, [3, 1, 4]))
    x, y = read_batch(p)
    np.testing.assert_array_equal(x.reshape(3, 3072), data)
    assert y.tolist() == [3, 1, 4]


def test_safe_extract_skips_traversal(tmp_path):
    tar_path = tmp_path / "c.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for name, payload in [(f"{FOLDER}/test_batch", b"ok"), ("../escape", b"x"),
                              (f"{FOLDER}/../../escape2", b"x"), ("/abs_escape", b"x")]:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        link = tarfile.TarInfo(f"{FOLDER}/data_batch_1")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    root = tmp_path / "root"
    root.mkdir()
    _safe_extract(tar_path, root)
    assert (root / FOLDER / "test_batch").read_bytes() == b"ok"
    assert not (root / FOLDER / "data_batch_1").exists()
    assert not (tmp_path / "escape").exists() and not (tmp_path / "escape2").exists()
    assert sorted(p.name for p in root.rglob("*")) == [FOLDER, "test_batch"]


def test_missing_batches(tmp_path):
    with pytest.raises(DataError, match="data_batch_1"):
        load_dataset("cifar10", tmp_path, download=False)
