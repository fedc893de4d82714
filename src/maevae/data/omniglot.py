"""OMNIGLOT, 28x28 grey.

Two sources:

(a) Burda et al.'s ``chardata.mat`` (the file of the IWAE and MAE papers), looked for at
    ``<root>/omniglot/chardata.mat`` and ``<root>/chardata.mat``. Keys ``data`` (784 x 24,345),
    ``target`` (classes x 24,345, one-hot), ``testdata`` (784 x 8,070), ``testtarget``; values are
    floats in [0, 1], stored here as uint8 ``round(v * 255)``; labels are the argmax of the
    targets over the class axis. Orientation (SPEC §4.2): ``fortran=False`` (the MAE authors)
    transposes the matrix and reshapes each 784-vector in C order to 28x28; ``fortran=True``
    (IWAE) additionally transposes each image (IWAE's Fortran-order flatten).

(b) Lake et al.'s zips ``<root>/omniglot-py/images_background.zip`` and
    ``images_evaluation.zip`` (torchvision layout ``images_*/<alphabet>/<character>/*.png``).
    Each 105x105 one-bit PNG (white background = 1, ink = 0) is inverted to ink = 1, resized
    to 28x28 by exact area averaging (:func:`area_matrix`, an ideal box filter) and stored as
    uint8 ``round(v * 255)``. 32,460 images in all (50 alphabets, 1,623 characters, 20 drawings
    each).
    Test split: per character, its drawings (sorted by file name) are shuffled with
    ``default_rng(test_split_seed)`` and ``round(20 * test_fraction)`` = 5 go to the test set,
    giving 24,345 train / 8,115 test -- the same training size as Burda's file but NOT the same
    images. The test split does not depend on the run's ``seed``, so runs with different seeds
    share a test set. Labels: ``label="alphabet"`` (default; 0..49: the 30 background alphabets
    sorted by name, then the 20 evaluation alphabets) or ``label="character"`` (0..1622, in the
    same order). Built arrays are cached in ``<root>/omniglot-py/maevae_omniglot28_v1.npz``
    (or, when that folder is read-only -- no write permission bits, even for root -- in
    ``<user cache>/omniglot-py/``) together with the zips' sizes and sha256
    prefixes, so a changed zip triggers a rebuild. A cache is also checked on read (members'
    declared sizes before inflating, then dtype, shape and label ranges); one that fails is
    ignored and rebuilt, and the data note says why.

Validation split of the training part (both sources): ``split="mae"`` holds out ``n_val``
(default 2,345, as the MAE authors) after a ``default_rng(seed)`` shuffle; ``split="iwae"`` is
IWAE's procedure: ``np.random.RandomState(123).permutation`` and the LAST ``n_val`` (default
1,345) become validation (on Burda's file this reproduces IWAE's split exactly).
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import time
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from maevae.data.base import ImageSplits
from maevae.data.download import download as _download
from maevae.data.images import MAX_IMAGE_FILE_BYTES, load_image_bytes
from maevae.data.paths import user_cache_dir
from maevae.data.splits import seeded_holdout
from maevae.errors import DataError

__all__ = [
    "CACHE_KEYS",
    "CACHE_NAME",
    "CACHE_VERSION",
    "IWAE_SEED",
    "MAT_KEYS",
    "MAX_CACHE_BYTES",
    "NOTE_ZIPS",
    "OMNIGLOT_MIRRORS",
    "SIDE",
    "SPLIT_N_VAL",
    "TEST_FRACTION",
    "TEST_SPLIT_SEED",
    "ZIP_NAMES",
    "ZIP_SHA256",
    "area_matrix",
    "build_omniglot28",
    "find_chardata",
    "load_omniglot",
    "load_omniglot_zip_arrays",
    "omniglot_val_split",
    "read_chardata_mat",
    "zip_test_split",
]

MAT_KEYS = ("data", "target", "testdata", "testtarget")
SPLIT_N_VAL = {"mae": 2345, "iwae": 1345}
IWAE_SEED = 123

ZIP_NAMES = ("images_background.zip", "images_evaluation.zip")
ZIP_SHA256 = {
    "images_background.zip": "413f53c357d155397f06175d5d1154c0cc0abd31d7aadaaee0bd9b48c2013f7b",
    "images_evaluation.zip": "88ebe0dc071fa8a7a822e665fd27b19491c4f04987a1dedc9a5452c1be4b5ee4",
}
OMNIGLOT_MIRRORS: list[str] = [
    "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/",
]
CACHE_VERSION = "v1"  # bump when the build (resize, inversion, ordering) changes
CACHE_NAME = f"maevae_omniglot28_{CACHE_VERSION}.npz"
TEST_FRACTION = 0.25
TEST_SPLIT_SEED = 524287
SIDE = 28

NOTE_ZIPS = (
    "OMNIGLOT built from Lake et al.'s zips; NOT Burda et al.'s chardata.mat split — numbers "
    "are not comparable to the paper's Table 1b"
)


# --------------------------------------------------------------------------- chardata.mat


def find_chardata(root: str | Path) -> Path | None:
    """The IWAE ``chardata.mat`` under ``root`` (``omniglot/`` first), or None."""
    root = Path(root)
    for candidate in (root / "omniglot" / "chardata.mat", root / "chardata.mat"):
        if candidate.is_file():
            return candidate
    return None


def _to_images(data: np.ndarray, path: Path, key: str, fortran: bool) -> np.ndarray:
    data = np.asarray(data)
    if data.ndim != 2 or SIDE * SIDE not in data.shape:
        raise DataError(
            f"{path}: '{key}' has shape {data.shape}; expected 784 x N (28x28 images as columns)"
        )
    if not np.issubdtype(data.dtype, np.number):
        raise DataError(f"{path}: '{key}' has dtype {data.dtype}; expected numbers in [0, 1]")
    # Burda's layout is 784 x N; accept N x 784 as well (unambiguous unless N == 784).
    flat = data.T if data.shape[0] == SIDE * SIDE else data
    flat = flat.astype(np.float64)
    if flat.size and (np.nanmin(flat) < -1e-6 or np.nanmax(flat) > 1 + 1e-6 or
                      np.isnan(flat).any()):
        raise DataError(
            f"{path}: '{key}' has values outside [0, 1] (min {np.nanmin(flat):g}, max "
            f"{np.nanmax(flat):g}); expected Burda's chardata.mat intensities"
        )
    images = flat.reshape(-1, SIDE, SIDE)  # C-order reshape (MAE authors)
    if fortran:
        images = images.transpose(0, 2, 1)  # IWAE: Fortran-order flatten == per-image transpose
    out = np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(out[:, None, :, :])


def _to_labels(target: np.ndarray, n: int, path: Path, key: str) -> np.ndarray:
    target = np.asarray(target)
    if n > 1 and target.size == n and (target.ndim == 1 or 1 in target.shape):
        return target.reshape(-1).astype(np.int64)  # a plain label vector
    if target.ndim == 2:
        if target.shape[1] == n:
            return np.argmax(target, axis=0).astype(np.int64)
        if target.shape[0] == n:
            return np.argmax(target, axis=1).astype(np.int64)
    raise DataError(
        f"{path}: '{key}' has shape {target.shape}; expected classes x {n} one-hot targets"
    )


def read_chardata_mat(path: str | Path, *, fortran: bool = False) -> dict[str, np.ndarray]:
    """Read Burda's ``chardata.mat``; returns train_x/train_y/test_x/test_y (uint8 / int64)."""
    path = Path(path)
    try:
        from scipy.io import loadmat

        mat = loadmat(str(path))
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; place Burda's chardata.mat there") from None
    except NotImplementedError:
        raise DataError(
            f"{path} is a MATLAB v7.3 (HDF5) file; re-save it as a v7 .mat (save -v7)"
        ) from None
    except Exception as exc:  # scipy raises ValueError/TypeError/OSError on garbage
        raise DataError(f"{path} is not a readable .mat file ({exc}); replace it") from None
    missing = [k for k in MAT_KEYS if k not in mat]
    if missing:
        raise DataError(
            f"{path} lacks the keys {', '.join(missing)}; expected Burda's chardata.mat with keys "
            f"{', '.join(MAT_KEYS)}"
        )
    train_x = _to_images(mat["data"], path, "data", fortran)
    test_x = _to_images(mat["testdata"], path, "testdata", fortran)
    return {
        "train_x": train_x,
        "train_y": _to_labels(mat["target"], len(train_x), path, "target"),
        "test_x": test_x,
        "test_y": _to_labels(mat["testtarget"], len(test_x), path, "testtarget"),
    }


# --------------------------------------------------------------------------- splits


def omniglot_val_split(n: int, split: str, seed: int, n_val: int | None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The validation split of ``n`` OMNIGLOT training images for ``split``:
    ``(train_idx, val_idx)`` with ``n_val`` (default the split's own) held out by a seeded
    shuffle."""
    if split not in SPLIT_N_VAL:
        raise DataError(
            f"unknown split {split!r} for omniglot; allowed: {', '.join(SPLIT_N_VAL)}"
        )
    n_val = SPLIT_N_VAL[split] if n_val is None else n_val
    if isinstance(n_val, bool) or not isinstance(n_val, int | np.integer) or not 0 <= n_val < n:
        raise DataError(
            f"n_val={n_val!r} is invalid for omniglot with {n} training images; set data.n_val "
            f"to an integer in 0..{n - 1}"
        )
    if split == "mae":
        return seeded_holdout(n, n_val, seed)
    perm = np.random.RandomState(IWAE_SEED).permutation(n)
    return perm[: n - n_val], perm[n - n_val :]


# --------------------------------------------------------------------------- zips


def _fingerprint(paths: list[Path]) -> np.ndarray:
    items = []
    for p in paths:
        h = hashlib.sha256()
        try:
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except OSError as exc:
            raise DataError(f"cannot read {p}: {exc.strerror or exc}; check its permissions"
                            ) from None
        items.append(f"{p.name}:{p.stat().st_size}:{h.hexdigest()[:16]}")
    return np.array(items)


@functools.lru_cache(maxsize=8)
def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights of exact area averaging (each row sums to 1).

    Output pixel ``i`` covers ``[i, i+1) * n_in / n_out`` of the input axis; input pixel ``j``
    weighs the length of its overlap with that footprint. ``A_h @ img @ A_w.T`` is an
    anti-aliased resize (the ideal box filter).
    """
    scale = n_in / n_out
    lo = np.arange(n_out)[:, None] * scale
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(j + 1, lo + scale) - np.maximum(j, lo), 0.0, None)
    return (overlap / scale).astype(np.float32)


def _decode_png(data: bytes, label: str) -> np.ndarray:
    """PNG bytes -> float32 [28, 28] ink image (background 0, ink 1)."""
    try:
        im = load_image_bytes(data, label)
    except DataError as exc:
        raise DataError(f"{exc}; the zip is corrupt") from None
    with im:
        if im.mode == "1":
            white = np.asarray(im, dtype=np.float32)
        else:
            white = np.asarray(im.convert("L"), dtype=np.float32) * (1.0 / 255.0)
    ink = 1.0 - white
    h, w = ink.shape
    if (h, w) == (SIDE, SIDE):
        return ink
    return area_matrix(h, SIDE) @ ink @ area_matrix(w, SIDE).T


def build_omniglot28(zip_paths: list[Path]) -> dict[str, np.ndarray]:
    """Decode and resize every PNG in the zips; returns the arrays stored in the cache."""
    return _build(zip_paths)


def _build(zip_paths: list[Path]) -> dict[str, np.ndarray]:
    images, alphabets, characters, drawings = [], [], [], []
    alphabet_names: list[str] = []
    char_keys: dict[tuple[str, str, str], int] = {}
    for zpath in zip_paths:
        top = zpath.name[: -len(".zip")]
        try:
            with zipfile.ZipFile(zpath) as zf:
                entries = []
                for info in zf.infolist():
                    parts = PurePosixPath(info.filename).parts
                    if (info.is_dir() or len(parts) != 4 or parts[0] != top
                            or not parts[3].lower().endswith(".png") or parts[3].startswith(".")):
                        continue
                    entries.append((parts[1], parts[2], parts[3], info))
                if not entries:
                    raise DataError(
                        f"{zpath} holds no images; expected {top}/<alphabet>/<character>/*.png"
                    )
                entries.sort(key=lambda e: e[:3])
                alpha_index = {}
                for alpha in sorted({e[0] for e in entries}):
                    alpha_index[alpha] = len(alphabet_names)
                    alphabet_names.append(f"{top}/{alpha}")
                for alpha, char, fname, info in entries:
                    key = (top, alpha, char)
                    if key not in char_keys:
                        char_keys[key] = len(char_keys)
                    if info.file_size > MAX_IMAGE_FILE_BYTES:
                        raise DataError(
                            f"{zpath}:{info.filename} declares {info.file_size} bytes, above "
                            f"the limit of {MAX_IMAGE_FILE_BYTES} for one image; the zip is "
                            "corrupt: delete it and download it again"
                        )
                    data = zf.read(info)  # inflates at most info.file_size bytes
                    images.append(_decode_png(data, f"{zpath}:{info.filename}"))
                    alphabets.append(alpha_index[alpha])
                    characters.append(char_keys[key])
                    drawings.append(fname)
        except DataError:
            raise
        except FileNotFoundError:
            raise DataError(f"{zpath} does not exist") from None
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            raise DataError(
                f"{zpath} is not a valid zip ({exc}); delete it and download it again"
            ) from None
    x = np.rint(np.clip(np.stack(images), 0.0, 1.0) * 255.0).astype(np.uint8)
    return {
        "images": x[:, None, :, :],
        "alphabet": np.asarray(alphabets, dtype=np.int64),
        "character": np.asarray(characters, dtype=np.int64),
        "drawing": np.asarray(drawings),
        "alphabet_names": np.asarray(alphabet_names),
    }


CACHE_KEYS = ("images", "alphabet", "character", "drawing", "alphabet_names")
# Largest cache maevae reads (inflated bytes of all members); the full set needs about 30 MB.
MAX_CACHE_BYTES = 512 << 20


def _cache_problem(arrays: dict[str, np.ndarray]) -> str | None:
    """Why ``arrays`` (read from a cache) are not what :func:`build_omniglot28` writes, or None."""
    x = arrays["images"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (1, SIDE, SIDE):
        return f"images are {x.dtype} {x.shape}, expected uint8 [N, 1, {SIDE}, {SIDE}]"
    n = len(x)
    if n == 0:
        return "it holds no images"
    names = arrays["alphabet_names"]
    if names.dtype.kind != "U" or names.ndim != 1 or len(names) == 0:
        return f"alphabet_names is {names.dtype} {names.shape}, expected a list of names"
    for key in ("alphabet", "character"):
        a = arrays[key]
        if a.dtype != np.int64 or a.shape != (n,):
            return f"{key} is {a.dtype} {a.shape}, expected int64 [{n}]"
    if arrays["alphabet"].min() < 0 or arrays["alphabet"].max() >= len(names):
        return f"alphabet labels lie outside 0..{len(names) - 1}"
    if arrays["character"].min() < 0 or arrays["character"].max() >= n:
        return "character labels are out of range"
    d = arrays["drawing"]
    if d.dtype.kind != "U" or d.shape != (n,):
        return f"drawing is {d.dtype} {d.shape}, expected {n} file names"
    return None


def _read_cache(path: Path, fingerprint: np.ndarray) -> tuple[dict | None, str | None]:
    """(arrays, None) from a valid cache; (None, why) when it is absent, stale or wrong.

    The members' declared sizes are checked before anything is inflated, and the arrays are
    checked (dtype, shape, label ranges) after: a cache with the right fingerprint but wrong
    contents is never returned.
    """
    if not path.is_file():
        return None, None
    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(i.file_size for i in zf.infolist())
        if total > MAX_CACHE_BYTES:
            return None, f"its members declare {total} bytes, above {MAX_CACHE_BYTES}"
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["version"]) != CACHE_VERSION:
                return None, "it is another version"
            if not np.array_equal(npz["source"], fingerprint):
                return None, "it was built from other zips"
            arrays = {k: npz[k] for k in CACHE_KEYS}
    except Exception as exc:  # unreadable / partial / old cache: rebuild it
        return None, f"it is unreadable ({type(exc).__name__})"
    why = _cache_problem(arrays)
    return (None, why) if why else (arrays, None)


def _writable(folder: Path) -> bool:
    """Writable, and not marked read-only by its mode bits (root ignores the bits)."""
    try:
        return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)
    except OSError:
        return False


def _write_cache(path: Path, arrays: dict[str, np.ndarray], fingerprint: np.ndarray) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not _writable(path.parent):
            return False
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError:
        return False
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, version=np.array(CACHE_VERSION), source=fingerprint, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
        return True
    except OSError:
        return False
    finally:
        if tmp.exists():
            tmp.unlink()


def _cache_paths(folder: Path, fingerprint: np.ndarray, cache_dir: Path | None) -> list[Path]:
    tag = hashlib.sha256("|".join(fingerprint.tolist()).encode()).hexdigest()[:12]
    fallback = (cache_dir or user_cache_dir() / "omniglot-py") / (
        f"maevae_omniglot28_{CACHE_VERSION}_{tag}.npz")
    return [folder / CACHE_NAME, fallback] if cache_dir is None else [fallback]


def load_omniglot_zip_arrays(folder: str | Path, *, download: bool = False,
                             cache_dir: str | Path | None = None
                             ) -> tuple[dict[str, np.ndarray], str]:
    """Arrays of the whole zip-derived set (cached); returns (arrays, provenance note)."""
    folder = Path(folder)
    paths = [folder / n for n in ZIP_NAMES]
    missing = [p for p in paths if not p.is_file()]
    if missing and download:
        env = os.environ.get("MAEVAE_OMNIGLOT_MIRROR", "").strip()
        bases = [b.strip() for b in env.split(",") if b.strip()] if env else OMNIGLOT_MIRRORS
        bases = [b if b.endswith("/") else b + "/" for b in bases]
        for p in missing:
            _download([b + p.name for b in bases], p, sha256=ZIP_SHA256.get(p.name),
                      expected=list(ZIP_NAMES))
        missing = []
    if missing:
        raise DataError(
            f"OMNIGLOT not found: place Burda's chardata.mat in {folder.parent / 'omniglot'} or "
            f"Lake et al.'s {' and '.join(ZIP_NAMES)} in {folder}"
        )
    fingerprint = _fingerprint(paths)
    candidates = _cache_paths(folder, fingerprint, Path(cache_dir) if cache_dir else None)
    rejected = []
    for c in candidates:
        arrays, why = _read_cache(c, fingerprint)
        if arrays is not None:
            return arrays, f"loaded from cache {c}"
        if why:
            rejected.append(f"ignored the cache {c}: {why}")
    t0 = time.perf_counter()
    arrays = build_omniglot28(paths)
    took = time.perf_counter() - t0
    why = _cache_problem(arrays)
    if why:  # a zip with odd contents (not a cache problem): refuse rather than train on it
        raise DataError(f"the OMNIGLOT arrays built from {folder} are wrong ({why}); replace "
                        "the zips")
    pre = "; ".join(rejected) + ("; " if rejected else "")
    for c in candidates:
        if _write_cache(c, arrays, fingerprint):
            return arrays, f"{pre}built from the zips in {took:.1f} s, cached in {c}"
    return arrays, f"{pre}built from the zips in {took:.1f} s (no writable cache folder)"


def zip_test_split(character: np.ndarray, drawing: np.ndarray, test_fraction: float,
                   seed: int) -> np.ndarray:
    """Boolean mask of test images: per character, ``round(k * test_fraction)`` drawings."""
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(character), dtype=bool)
    order = np.lexsort((drawing, character))  # by character, then drawing file name
    bounds = np.flatnonzero(np.diff(character[order])) + 1
    for group in np.split(order, bounds):
        k = int(np.floor(len(group) * test_fraction + 0.5))
        if k:
            is_test[group[rng.permutation(len(group))[:k]]] = True
    return is_test


# --------------------------------------------------------------------------- entry point


def load_omniglot(root: Path, *, source: str = "auto", split: str = "mae", seed: int = 524287,
                  n_val: int | None = None, download: bool = True, fortran: bool = False,
                  label: str | None = None, test_fraction: float = TEST_FRACTION,
                  test_split_seed: int = TEST_SPLIT_SEED,
                  cache_dir: str | Path | None = None) -> ImageSplits:
    """``source``: "auto" (chardata.mat if present, else the zips), "mat" or "zips"."""
    if source not in ("auto", "mat", "zips"):
        raise DataError(f"unknown omniglot source {source!r}; allowed: auto, mat, zips")
    if label not in (None, "alphabet", "character"):
        raise DataError(f"unknown omniglot label {label!r}; allowed: alphabet, character")
    if split not in SPLIT_N_VAL:
        raise DataError(f"unknown split {split!r} for omniglot; allowed: {', '.join(SPLIT_N_VAL)}")
    mat_path = find_chardata(root) if source != "zips" else None
    if source == "mat" and mat_path is None:
        raise DataError(
            f"chardata.mat not found: place Burda's chardata.mat at "
            f"{root / 'omniglot' / 'chardata.mat'} (or {root / 'chardata.mat'}); it is not "
            "downloadable here"
        )
    orientation = "IWAE Fortran-order (transposed)" if fortran else "MAE C-order"
    if mat_path is not None:
        if label == "character":
            raise DataError(
                f"{mat_path} only has the classes of its targets; use label=alphabet with "
                "chardata.mat"
            )
        d = read_chardata_mat(mat_path, fortran=fortran)
        tr, va = omniglot_val_split(len(d["train_x"]), split, seed, n_val)
        notes = [f"OMNIGLOT from Burda et al.'s chardata.mat ({mat_path}), {orientation} "
                 f"reshape, split={split} (n_val={len(va)})"]
        return ImageSplits("omniglot", d["train_x"][tr], d["train_y"][tr], d["train_x"][va],
                           d["train_y"][va], d["test_x"], d["test_y"], notes, root, [mat_path])
    if fortran:
        raise DataError("fortran=True only applies to chardata.mat; the zip-built OMNIGLOT has "
                        "upright images: drop the omniglot fortran option")
    folder = root / "omniglot-py"
    arrays, how = load_omniglot_zip_arrays(folder, download=download, cache_dir=cache_dir)
    ys = arrays["character" if label == "character" else "alphabet"]
    is_test = zip_test_split(arrays["character"], arrays["drawing"], test_fraction,
                             test_split_seed)
    train_all = np.flatnonzero(~is_test)
    test = np.flatnonzero(is_test)
    tr, va = omniglot_val_split(len(train_all), split, seed, n_val)
    tr, va = train_all[tr], train_all[va]
    x = arrays["images"]
    notes = [
        NOTE_ZIPS,
        f"zip-built OMNIGLOT from {folder} ({how}): 28x28 area-averaged, ink=1; per-character "
        f"test split (test_fraction={test_fraction}, seed {test_split_seed}); labels="
        f"{label or 'alphabet'}; split={split} (n_val={len(va)})",
    ]
    zips = [folder / n for n in ZIP_NAMES]  # the source; the .npz cache is derived from them
    return ImageSplits("omniglot", x[tr], ys[tr], x[va], ys[va], x[test], ys[test], notes,
                       root, zips)
