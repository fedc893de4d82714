"""Reader and writer for the IDX format (the container of the MNIST / Fashion-MNIST files).

An IDX file is: two zero bytes, one dtype code, one byte with the number of dimensions ``k``,
``k`` big-endian uint32 sizes, then the array in C order, big-endian. Files may be gzip
compressed; compression is detected from the gzip magic bytes, never from the file name.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from maevae.errors import DataError

# IDX dtype code -> numpy dtype (big-endian as stored on disk).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("=").str[1:]: code for code, dt in IDX_DTYPES.items()}

GZIP_MAGIC = b"\x1f\x8b"


def read_file_content(path: str | Path) -> bytes:
    """Return the bytes of ``path``, gunzipped when the file starts with the gzip magic."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"file {path} does not exist") from None
    except OSError as exc:
        raise DataError(
            f"cannot read {path}: {exc.strerror or exc}; check its permissions"
        ) from None
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path} is a corrupt gzip file (CRC checksum failed or the data is truncated: {exc}); "
            "delete it and download it again"
        ) from None


def parse_idx(content: bytes, name: str | Path = "<bytes>") -> np.ndarray:
    """Parse IDX ``content`` (already decompressed); ``name`` is used in error messages."""
    if len(content) < 4:
        raise DataError(f"{name} is not an IDX file: only {len(content)} bytes; replace it")
    zero, code, ndim = struct.unpack(">HBB", content[:4])
    if zero != 0 or code not in IDX_DTYPES:
        raise DataError(
            f"{name} is not an IDX file (bad magic bytes {content[:4].hex()}, expected 0000 + "
            "dtype code 08/09/0b/0c/0d/0e + ndim); replace it with the original file"
        )
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataError(f"{name} is truncated inside its IDX header; download it again")
    dims = struct.unpack(f">{ndim}I", content[4:header])
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(content) - header
    if got != expected:
        what = "truncated" if got < expected else "longer than its header says"
        raise DataError(
            f"{name} is {what}: header says shape {tuple(dims)} ({expected} data bytes) but the "
            f"file holds {got}; download it again"
        )
    arr = np.frombuffer(content, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip or plain) into a native-endian numpy array."""
    return parse_idx(read_file_content(path), path)


def write_idx(path: str | Path, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` as IDX; gzip it when ``compress`` (default: when the name ends in .gz)."""
    path = Path(path)
    array = np.asarray(array)
    key = array.dtype.newbyteorder("=").str[1:]
    if key not in _CODES:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    if array.ndim > 255:
        raise ValueError("IDX cannot store more than 255 dimensions")
    code = _CODES[key]
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    data = header + body
    if compress is None:
        compress = path.name.endswith(".gz")
    if compress:
        data = gzip.compress(data, mtime=0)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path
