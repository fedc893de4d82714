"""MNIST and Fashion-MNIST from the four IDX files (torchvision's ``<root>/<NAME>/raw`` layout).

Each file may be gzip-compressed (``name.gz``) or plain (``name``); compression is detected from
the content. MNIST is verified against the canonical md5 of the *uncompressed* content, so any
gzip wrapper is accepted. Fashion-MNIST: only the md5s of the official ``.gz`` wrappers are
known to us (they are checked on download); files already on disk are verified by structure
(IDX magic, 28x28, image/label counts, labels 0..9), not by checksum.

Missing files are downloaded (``download=True``) from the mirror lists below, which can be
replaced by the comma-separated base URLs in ``$MAEVAE_MNIST_MIRROR`` /
``$MAEVAE_FASHION_MNIST_MIRROR``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maevae.data.download import download as _download
from maevae.data.idx import parse_idx, read_idx_content
from maevae.errors import DataError

__all__ = [
    "EXPECTED_COUNTS",
    "FASHION_MNIST_GZ_MD5",
    "FASHION_MNIST_MIRRORS",
    "MNIST_MD5",
    "MNIST_MIRRORS",
    "STEMS",
    "load_idx_pair",
    "mirrors_for",
    "raw_dir",
]

# (stem, md5 of the uncompressed content)
MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MNIST_MIRRORS: list[str] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]

# md5 of the official .gz files as served by the mirrors (the wrappers, not the content).
FASHION_MNIST_GZ_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_MNIST_MIRRORS: list[str] = [
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
]

# Number of images in each part; checked structurally.
EXPECTED_COUNTS: dict[str, int] = {"train": 60000, "test": 10000}

STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class _Variant:
    name: str  # dataset name in messages
    folder: str  # torchvision folder under the data root
    mirror_env: str
    content_md5: dict[str, str] | None = None  # md5 of uncompressed content (verified)
    gz_md5: dict[str, str] | None = None  # md5 of the downloaded .gz (download only)
    mirrors: list[str] = field(default_factory=list)


def _variant(name: str) -> _Variant:
    # Looked up at call time so tests can monkeypatch the module-level tables.
    if name == "mnist":
        return _Variant("MNIST", "MNIST", "MAEVAE_MNIST_MIRROR", MNIST_MD5, None, MNIST_MIRRORS)
    if name == "fashion_mnist":
        return _Variant("Fashion-MNIST", "FashionMNIST", "MAEVAE_FASHION_MNIST_MIRROR", None,
                        FASHION_MNIST_GZ_MD5, FASHION_MNIST_MIRRORS)
    raise ValueError(name)


def mirrors_for(name: str) -> list[str]:
    """Base URLs to try, in order: ``$MAEVAE_*_MIRROR`` (comma-separated) else the module list."""
    v = _variant(name)
    env = os.environ.get(v.mirror_env, "").strip()
    bases = [b.strip() for b in env.split(",") if b.strip()] if env else list(v.mirrors)
    return [b if b.endswith("/") else b + "/" for b in bases]


def raw_dir(root: str | Path, name: str = "mnist") -> Path:
    """The folder holding the idx files of ``name`` (``mnist`` or ``fashion_mnist``) under
    ``root``."""
    return Path(root) / _variant(name).folder / "raw"


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _verify_content(v: _Variant, stem: str, path: Path, content: bytes) -> None:
    if v.content_md5 is None:
        return
    want = v.content_md5[stem]
    got = hashlib.md5(content).hexdigest()
    if got != want:
        raise DataError(
            f"{v.name} file {path} failed its checksum (md5 of the uncompressed content is {got}, "
            f"expected {want}); the file is corrupt or not {v.name}: delete it so it is "
            "downloaded again, or replace it with a good copy"
        )


def _check_structure(v: _Variant, part: str, img_path: Path, images: np.ndarray,
                     lbl_path: Path, labels: np.ndarray) -> None:
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(
            f"{img_path} holds a {images.dtype} array of shape {images.shape}; expected {v.name} "
            "images uint8 [N, 28, 28]: replace the file"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(
            f"{lbl_path} holds a {labels.dtype} array of shape {labels.shape}; expected {v.name} "
            "labels uint8 [N]: replace the file"
        )
    if labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{img_path} has {images.shape[0]} images but {lbl_path} has {labels.shape[0]} "
            "labels; the two files must come from the same release"
        )
    want = EXPECTED_COUNTS[part]
    if images.shape[0] != want:
        raise DataError(
            f"{img_path} has {images.shape[0]} images, expected {want} for the {v.name} {part} "
            "set: replace the file"
        )
    if labels.size and int(labels.max()) > 9:
        raise DataError(f"{lbl_path} has labels above 9; expected {v.name} labels 0..9")


def _fetch_missing(v: _Variant, name: str, folder: Path, missing: list[str]) -> None:
    expected = [f"{s}.gz" for s in STEMS["train"] + STEMS["test"]]
    bases = mirrors_for(name)
    for stem in missing:
        def check(tmp: Path, stem: str = stem) -> None:
            content = read_idx_content(tmp, f"downloaded {stem}.gz")
            parse_idx(content, f"downloaded {stem}.gz")
            _verify_content(v, stem, Path(f"downloaded {stem}.gz"), content)

        md5 = v.gz_md5[stem] if v.gz_md5 else None
        _download([b + f"{stem}.gz" for b in bases], folder / f"{stem}.gz", md5,
                  decompress_check=check, expected=expected)


def idx_files(root: str | Path, name: str = "mnist") -> list[Path]:
    """The four IDX files :func:`load_idx_pair` reads (plain before ``.gz``), train first;
    call it after loading (every file is then there)."""
    folder = raw_dir(root, name)
    found = [_find(folder, s) for part in ("train", "test") for s in STEMS[part]]
    return [p for p in found if p is not None]


def load_idx_pair(root: str | Path, name: str = "mnist", *, download: bool = True
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return ``{"train": (images [N,1,28,28] uint8, labels [N] int64), "test": (...)}``."""
    v = _variant(name)
    folder = raw_dir(root, name)
    all_stems = [s for part in ("train", "test") for s in STEMS[part]]
    missing = [s for s in all_stems if _find(folder, s) is None]
    if missing:
        if not download:
            raise DataError(
                f"{v.name} files missing in {folder}: {', '.join(missing)} (gz or plain); place "
                "them there or allow downloading"
            )
        _fetch_missing(v, name, folder, missing)
    out = {}
    for part in ("train", "test"):
        arrays, paths = [], []
        for stem in STEMS[part]:
            path = _find(folder, stem)
            assert path is not None
            content = read_idx_content(path)
            arrays.append(parse_idx(content, path))
            _verify_content(v, stem, path, content)
            paths.append(path)
        images, labels = arrays
        _check_structure(v, part, paths[0], images, paths[1], labels)
        out[part] = (images[:, None, :, :], labels.astype(np.int64))
    return out
