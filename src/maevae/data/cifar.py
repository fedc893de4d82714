"""CIFAR-10 from the python-pickle batches ``<root>/cifar-10-batches-py/``.

The batches are pickles, and unpickling can run arbitrary code, so they are read with a
restricted unpickler that resolves exactly four globals -- numpy's array reconstructor
(``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct``),
``numpy.ndarray`` and ``numpy.dtype`` -- and refuses every other one before anything runs.

Images are uint8 [N, 3, 32, 32] (each 3072-byte row is the 32x32 red plane, then green, then
blue). Split (SPEC §3.1): 2,000 of the 50,000 training images are held out for validation after a
``default_rng(seed)`` shuffle: 48,000 / 2,000 / 10,000.
"""

from __future__ import annotations

import os
import pickle
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

import numpy as np

from maevae.data.download import download as _download
from maevae.data.splits import seeded_holdout
from maevae.errors import DataError

__all__ = [
    "CIFAR10_MIRRORS",
    "FOLDER",
    "MAX_BATCH_BYTES",
    "N_VAL",
    "RestrictedUnpickler",
    "TARBALL",
    "TARBALL_MD5",
    "TEST_BATCH",
    "TRAIN_BATCHES",
    "load_cifar10_arrays",
    "read_batch",
    "safe_load_pickle",
    "split_cifar",
]

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
TARBALL = "cifar-10-python.tar.gz"
TARBALL_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_MIRRORS: list[str] = ["https://www.cs.toronto.edu/~kriz/"]
N_VAL = 2000
# Largest batch file read (each real batch is 31 MB) and largest member extracted from the tarball.
MAX_BATCH_BYTES = 256 << 20


def _allowed_globals() -> dict[tuple[str, str], object]:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the globals a numpy-array-in-a-dict pickle needs."""

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        """Only the globals a CIFAR-10 batch needs; any other raises ``UnpicklingError``."""
        obj = _allowed_globals().get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return obj

    def persistent_load(self, pid):
        """Refuse persistent ids (CIFAR-10 batches have none)."""
        raise pickle.UnpicklingError("persistent ids are not allowed")


def safe_load_pickle(path: str | Path):
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (Python 2 pickles: latin1 strings)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_BATCH_BYTES:
                raise DataError(f"{path} holds {size} bytes, above the limit of {MAX_BATCH_BYTES} "
                                "for a CIFAR-10 batch (31 MB each); replace it")
            return RestrictedUnpickler(f, encoding="latin1").load()
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"CIFAR-10 batch {path} does not exist") from None
    except PermissionError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}; check its permissions"
                        ) from None
    except pickle.UnpicklingError as exc:
        raise DataError(
            f"refused to load {path}: {exc}; a CIFAR-10 batch holds only a dict of numpy arrays, "
            "lists and strings, so this file is not a genuine batch: replace it"
        ) from None
    except Exception as exc:  # EOFError, ValueError, ... on truncated or garbage files
        raise DataError(
            f"{path} is not a readable CIFAR-10 batch ({type(exc).__name__}: {exc}); replace it"
        ) from None


def _get(d: dict, key: str):
    for k in (key, key.encode()):
        if k in d:
            return d[k]
    return None


def read_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (images uint8 [N, 3, 32, 32], labels int64 [N])."""
    path = Path(path)
    d = safe_load_pickle(path)
    if not isinstance(d, dict):
        raise DataError(f"{path} holds a {type(d).__name__}, expected a dict with data and labels")
    data, labels = _get(d, "data"), _get(d, "labels")
    if data is None or labels is None:
        raise DataError(f"{path} lacks the 'data' or 'labels' entry of a CIFAR-10 batch")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' is {what}; expected a uint8 array [N, 3072]")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'labels' is not a list of integers") from None
    if y.shape != (data.shape[0],) or (y.size and (y.min() < 0 or y.max() > 9)):
        raise DataError(
            f"{path}: 'labels' must be {data.shape[0]} integers in 0..9, got shape {y.shape}"
        )
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32)), y


def _safe_extract(tar_path: Path, root: Path) -> None:
    """Extract only regular files under ``cifar-10-batches-py/`` (no links, no traversal)."""
    try:
        with tarfile.open(tar_path, "r:gz") as tar:
            for m in tar:
                p = PurePosixPath(m.name)
                if not m.isfile():
                    continue
                if p.is_absolute() or ".." in p.parts or len(p.parts) != 2 or p.parts[0] != FOLDER:
                    continue
                if m.size > MAX_BATCH_BYTES:
                    raise DataError(f"{tar_path}: member {m.name} declares {m.size} bytes, above "
                                    f"the limit of {MAX_BATCH_BYTES}; delete it and retry")
                dest = root / FOLDER / p.parts[1]
                dest.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                if src is None:
                    continue
                fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part",
                                           dir=dest.parent)
                try:
                    with os.fdopen(fd, "wb") as out:
                        left = MAX_BATCH_BYTES
                        while left > 0 and (chunk := src.read(min(1 << 20, left))):
                            out.write(chunk)
                            left -= len(chunk)
                    os.chmod(tmp, 0o644)
                    os.replace(tmp, dest)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{tar_path} could not be extracted ({exc}); delete it and retry") from None


def _mirrors() -> list[str]:
    env = os.environ.get("MAEVAE_CIFAR10_MIRROR", "").strip()
    bases = [b.strip() for b in env.split(",") if b.strip()] if env else list(CIFAR10_MIRRORS)
    return [b if b.endswith("/") else b + "/" for b in bases]


def load_cifar10_arrays(root: str | Path, *, download: bool = True
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The CIFAR-10 python batches under ``root`` (downloaded and checked when missing and
    ``download``): ``(train_x [50000, 3, 32, 32] uint8, train_y [50000] int64, test_x, test_y)``."""
    root = Path(root)
    folder = root / FOLDER
    names = TRAIN_BATCHES + (TEST_BATCH,)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        if not download:
            raise DataError(
                f"CIFAR-10 batches missing in {folder}: {', '.join(missing)}; place the extracted "
                f"{TARBALL} there or allow downloading"
            )
        tar_path = root / TARBALL
        if not tar_path.is_file():
            _download([b + TARBALL for b in _mirrors()], tar_path, TARBALL_MD5,
                      expected=[TARBALL])
        _safe_extract(tar_path, root)
        still = [n for n in names if not (folder / n).is_file()]
        if still:
            raise DataError(
                f"{tar_path} did not contain {', '.join(still)}; delete it and download it again"
            )
    parts = [read_batch(folder / n) for n in TRAIN_BATCHES]
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    test_x, test_y = read_batch(folder / TEST_BATCH)
    return train_x, train_y, test_x, test_y


def batch_files(root: str | Path) -> list[Path]:
    """The six batch files :func:`load_cifar10_arrays` reads, in its order."""
    return [Path(root) / FOLDER / n for n in TRAIN_BATCHES + (TEST_BATCH,)]


def split_cifar(n: int, split: str, seed: int, n_val: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The ``mae`` split of ``n`` training images: ``(train_idx, val_idx)`` with ``n_val``
    (default :data:`N_VAL`) held out by a seeded shuffle."""
    if split != "mae":
        raise DataError(f"unknown split {split!r} for cifar10; allowed: mae")
    n_val = N_VAL if n_val is None else n_val
    if isinstance(n_val, bool) or not isinstance(n_val, int | np.integer) or not 0 <= n_val < n:
        raise DataError(
            f"n_val={n_val!r} is invalid for cifar10 with {n} training images; set data.n_val "
            f"to an integer in 0..{n - 1}"
        )
    return seeded_holdout(n, n_val, seed)
