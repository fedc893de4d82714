import gzip

import numpy as np
import pytest

from maevae.data.idx import parse_idx, read_idx, write_idx
from maevae.errors import DataError


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip(tmp_path, name, dtype):
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    path = write_idx(tmp_path / name, arr)
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == name.endswith(".gz")
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


def test_header_layout_is_big_endian(tmp_path):
    path = write_idx(tmp_path / "x", np.arange(6, dtype=np.int16).reshape(2, 3))
    raw = path.read_bytes()
    assert raw[:4] == bytes([0, 0, 0x0B, 2])
    assert raw[4:12] == bytes([0, 0, 0, 2, 0, 0, 0, 3])
    assert raw[12:16] == bytes([0, 0, 0, 1])  # 0, 1 as big-endian int16


def test_compression_detected_by_content_not_name(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    plain_named_gz = write_idx(tmp_path / "plain.gz", arr, compress=False)
    gz_named_plain = write_idx(tmp_path / "packed", arr, compress=True)
    np.testing.assert_array_equal(read_idx(plain_named_gz), arr)
    np.testing.assert_array_equal(read_idx(gz_named_plain), arr)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_file_names_the_file(tmp_path, gz):
    arr = np.zeros((4, 28, 28), np.uint8)
    raw = write_idx(tmp_path / "full", arr, compress=False).read_bytes()
    bad = tmp_path / ("short-idx3-ubyte" + (".gz" if gz else ""))
    cut = raw[:-100]
    bad.write_bytes(gzip.compress(cut) if gz else cut)
    with pytest.raises(DataError, match="truncated") as e:
        read_idx(bad)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_truncated_gzip_stream_names_the_file(tmp_path):
    arr = np.arange(4 * 28 * 28, dtype=np.int32).reshape(4, 28, 28)
    raw = write_idx(tmp_path / "x.gz", arr).read_bytes()
    bad = tmp_path / "cut.gz"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError) as e:
        read_idx(bad)
    assert str(bad) in str(e.value) and "corrupt gzip" in str(e.value)


@pytest.mark.parametrize("head", [b"\x01\x00\x08\x01", b"\x00\x00\x07\x01", b"PK\x03\x04"])
def test_wrong_magic_names_the_file(tmp_path, head):
    bad = tmp_path / "wrong-magic"
    bad.write_bytes(head + b"\x00\x00\x00\x02" + b"ab")
    with pytest.raises(DataError, match="not an IDX file") as e:
        read_idx(bad)
    assert str(bad) in str(e.value)


def test_trailing_bytes_and_tiny_files_rejected():
    good = b"\x00\x00\x08\x01\x00\x00\x00\x02ab"
    np.testing.assert_array_equal(parse_idx(good), np.frombuffer(b"ab", np.uint8))
    with pytest.raises(DataError, match="longer than its header"):
        parse_idx(good + b"c", "f")
    with pytest.raises(DataError, match="only 2 bytes"):
        parse_idx(b"\x00\x00", "f")
    with pytest.raises(DataError, match="truncated inside its IDX header"):
        parse_idx(b"\x00\x00\x08\x03\x00\x00", "f")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nope")
