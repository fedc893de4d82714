"""Reader and writer for the IDX format (the container of the MNIST / Fashion-MNIST files).

An IDX file is: two zero bytes, one dtype code, one byte with the number of dimensions ``k``,
``k`` big-endian uint32 sizes, then the array in C order, big-endian. Files may be gzip
compressed; compression is detected from the gzip magic bytes, never from the file name.

Sizes are checked before anything is allocated: the product of the header's dimensions is
computed with Python integers (no int64 overflow), refused above :data:`MAX_IDX_BYTES`, and
compared with the bytes the file actually holds. A gzip file is inflated as a stream: once its
header is read, at most the declared size plus one byte is inflated, so a small gzip that would
inflate to many GiB is refused after a few MB, never held in memory.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from maevae.errors import DataError

__all__ = [
    "GZIP_MAGIC",
    "IDX_DTYPES",
    "MAX_GZIP_BYTES",
    "MAX_IDX_BYTES",
    "parse_idx",
    "read_file_content",
    "read_idx",
    "read_idx_content",
    "write_idx",
]

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

# Largest IDX array (data bytes) maevae reads: 10x MNIST's largest file (47 MB).
MAX_IDX_BYTES = 512 << 20
# Largest content read_file_content reads or inflates when the caller gives no limit.
MAX_GZIP_BYTES = 64 << 20
_CHUNK = 1 << 20


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.3g} GiB"


def _open(path: Path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"file {path} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, not a file; replace it with the file") from None
    except OSError as exc:
        raise DataError(
            f"cannot read {path}: {exc.strerror or exc}; check its permissions"
        ) from None


class _Inflater:
    """Reads the decompressed content of a (possibly multi-member) gzip file piece by piece."""

    def __init__(self, f, path: Path):
        self.f, self.path = f, path
        self.d = zlib.decompressobj(wbits=31)
        self.buf = b""  # compressed input not yet given to the decompressor

    def _corrupt(self, why) -> DataError:
        return DataError(
            f"{self.path} is a corrupt gzip file (CRC checksum failed or the data is truncated: "
            f"{why}); delete it and download it again"
        )

    def read(self, n: int) -> bytes:
        """Up to ``n`` decompressed bytes (fewer only at the end of the last member)."""
        out, want = [], n
        while want > 0:
            if self.d.eof:  # the next member, if any
                rest = self.d.unused_data or self.f.read(_CHUNK)
                if not rest:
                    break
                if rest[:2] != GZIP_MAGIC:
                    if rest.strip(b"\0"):
                        raise self._corrupt("trailing garbage after the gzip stream")
                    break  # zero padding, which gzip itself ignores
                self.d, self.buf = zlib.decompressobj(wbits=31), rest
            if not self.buf:
                self.buf = self.f.read(_CHUNK)
                if not self.buf:
                    raise self._corrupt("unexpected end of the compressed stream")
            try:
                piece = self.d.decompress(self.buf, min(want, 4 * _CHUNK))
            except zlib.error as exc:
                raise self._corrupt(exc) from None
            self.buf = self.d.unconsumed_tail
            out.append(piece)
            want -= len(piece)
        return b"".join(out)


def _reader(path: Path):
    """(file, read(n) -> bytes of the content, is_gzip)."""
    f = _open(path)
    try:
        head = f.read(2)
        f.seek(0)
    except OSError as exc:
        f.close()
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head == GZIP_MAGIC:
        inf = _Inflater(f, path)
        return f, inf.read, True
    return f, f.read, False


def read_file_content(path: str | Path, max_bytes: int | None = None) -> bytes:
    """Return the bytes of ``path``, gunzipped when the file starts with the gzip magic.

    At most ``max_bytes`` (default :data:`MAX_GZIP_BYTES`) are read or inflated; a longer
    content is refused with a :class:`DataError` naming the file.
    """
    path = Path(path)
    cap = MAX_GZIP_BYTES if max_bytes is None else max_bytes
    f, read, gz = _reader(path)
    with f:
        try:
            data = read(cap + 1)
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > cap:
        what = "inflates to" if gz else "holds"
        raise DataError(f"{path} {what} more than {_gib(cap)}, above the limit for a data file; "
                        "replace it with the original file")
    return data


def _parse_header(head: bytes, name) -> tuple[int, tuple[int, ...], np.dtype, int]:
    """(header length, dims, dtype, data bytes) from the first bytes of an IDX content."""
    if len(head) < 4:
        raise DataError(f"{name} is not an IDX file: only {len(head)} bytes; replace it")
    zero, code, ndim = struct.unpack(">HBB", head[:4])
    if zero != 0 or code not in IDX_DTYPES:
        raise DataError(
            f"{name} is not an IDX file (bad magic bytes {head[:4].hex()}, expected 0000 + "
            "dtype code 08/09/0b/0c/0d/0e + ndim); replace it with the original file"
        )
    header = 4 + 4 * ndim
    if len(head) < header:
        raise DataError(f"{name} is truncated inside its IDX header; download it again")
    dims = struct.unpack(f">{ndim}I", head[4:header])
    dtype = IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize  # Python ints: no overflow
    if expected > MAX_IDX_BYTES:
        raise DataError(
            f"{name}: its IDX header claims shape {tuple(dims)} = {expected} data bytes, above "
            f"the limit of {_gib(MAX_IDX_BYTES)}; the header is corrupt or the file is not a "
            "dataset maevae reads: replace it"
        )
    return header, dims, dtype, expected


def _check_length(name, dims, expected: int, got: int) -> None:
    if got != expected:
        what = "truncated" if got < expected else "longer than its header says"
        raise DataError(
            f"{name} is {what}: header says shape {tuple(dims)} ({expected} data bytes) but the "
            f"file holds {got if got <= expected else f'more than {expected}'}; download it again"
        )


def parse_idx(content: bytes, name: str | Path = "<bytes>") -> np.ndarray:
    """Parse IDX ``content`` (already decompressed); ``name`` is used in error messages."""
    header, dims, dtype, expected = _parse_header(content[:1024], name)
    _check_length(name, dims, expected, len(content) - header)
    arr = np.frombuffer(content, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx_content(path: str | Path, name: str | Path | None = None) -> bytes:
    """The decompressed content of IDX file ``path``, size-checked before it is read.

    The header is read first; the file must then hold exactly the declared number of bytes
    (at most :data:`MAX_IDX_BYTES`): a plain file is checked against its size on disk, a gzip
    file is inflated up to the declared size plus one byte and refused when longer.
    """
    path = Path(path)
    name = path if name is None else name
    f, read, gz = _reader(path)
    with f:
        try:
            head = read(4)
            if len(head) == 4:
                head += read(4 * head[3])
            header, dims, _, expected = _parse_header(head, name)
            if not gz:
                got = os.fstat(f.fileno()).st_size - header
                _check_length(name, dims, expected, got)
            body = read(expected + 1)
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    _check_length(name, dims, expected, len(body))
    return head + body


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip or plain) into a native-endian numpy array."""
    return parse_idx(read_idx_content(path), path)


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
