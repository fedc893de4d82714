"""A user's folder of PNG / JPEG images.

Layouts: flat (all images directly in the folder: unlabelled) or one subfolder per class
(labels = index of the subfolder name in sorted order; images anywhere below a class folder).
Hidden files and other file types are ignored.

Channels: ``channels=1`` (grey) or ``3`` (RGB); by default grey when every image is a grey
mode (1, L, LA, I, I;16, F), else RGB. Size: ``image_size=(H, W)`` resizes every image
(Lanczos); without it every image must have the same size.

Split: a ``default_rng(seed)`` shuffle; the first ``round(N * test_fraction)`` images are the
test set, the next ``round(N * val_fraction)`` (or ``n_val``) the validation set, the rest train
(defaults 10% / 10%). Each part keeps the sorted file order.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from maevae.data.base import ImageSplits
from maevae.data.splits import seeded_three_way
from maevae.errors import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg")
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def _is_image(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in EXTENSIONS


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_images(folder: Path) -> tuple[list[Path], list[int] | None, list[str]]:
    """Return (files, labels or None, class names)."""
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist or is not a folder")
    loose = sorted(p for p in folder.iterdir() if _is_image(p))
    classes = []
    for d in _visible_dirs(folder):
        files = sorted(p for p in d.rglob("*") if _is_image(p)
                       and not any(part.startswith(".") for part in p.relative_to(d).parts))
        if files:
            classes.append((d.name, files))
    if loose and classes:
        raise DataError(
            f"{folder} has both loose images (e.g. {loose[0].name}) and class subfolders (e.g. "
            f"{classes[0][0]}/); move the loose images into a subfolder or remove the subfolders"
        )
    if loose:
        return loose, None, []
    if not classes:
        raise DataError(
            f"{folder} has no images (.png, .jpg, .jpeg); put images in it, directly or in one "
            "subfolder per class"
        )
    files, labels = [], []
    for i, (_, fs) in enumerate(classes):
        files += fs
        labels += [i] * len(fs)
    return files, labels, [c for c, _ in classes]


def _header(path: Path) -> tuple[str, tuple[int, int]]:
    """(mode, (width, height)) from the file header, without decoding the pixels."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.mode, im.size
    except Exception as exc:
        raise DataError(f"cannot read image {path} ({exc}); fix or remove it") from None


def _load(path: Path):
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                return im.copy()
    except Exception as exc:
        raise DataError(f"cannot read image {path} ({exc}); fix or remove it") from None


def _parse_size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int | np.integer) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    try:
        h, w = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise DataError(
            f"data.image_size must be [height, width] or one integer, got {image_size!r}"
        ) from None
    if h < 1 or w < 1:
        raise DataError(f"data.image_size must be positive, got {image_size!r}")
    return h, w


def _common_size(files: list[Path], headers: list[tuple[str, tuple[int, int]]]
                 ) -> tuple[int, int]:
    first = headers[0][1]
    for p, (_, sz) in zip(files, headers):
        if sz != first:
            raise DataError(
                f"images have mixed sizes (e.g. {files[0].name} is {first[1]}x{first[0]}, "
                f"{p.name} is {sz[1]}x{sz[0]}); set data.image_size: [H, W] to resize them"
            )
    return first[1], first[0]


def infer_image_size(folder: Path) -> tuple[int, int]:
    """(H, W) shared by every image in ``folder``, from the file headers only."""
    files, _, _ = list_images(Path(folder))
    return _common_size(files, [_header(p) for p in files])


def load_folder(folder: Path, *, seed: int = 524287, n_val: int | None = None,
                channels: int | None = None, image_size=None, test_fraction: float = 0.1,
                val_fraction: float = 0.1) -> ImageSplits:
    from PIL import Image

    if channels not in (None, 1, 3):
        raise DataError(f"the folder option channels must be 1 or 3, got {channels!r} (a "
                        "config sets it with data.binarize: true = grey, false = RGB)")
    for f, key in ((test_fraction, "data.test_fraction"),
                   (val_fraction, "the folder option val_fraction")):
        if not isinstance(f, int | float) or not 0 <= f < 1:
            raise DataError(f"{key} must be a number in [0, 1), got {f!r}")
    size = _parse_size(image_size)
    files, labels, class_names = list_images(folder)
    headers = [_header(p) for p in files]
    if channels is None:
        channels = 1 if all(m in GREY_MODES for m, _ in headers) else 3
    if size is None:
        size = _common_size(files, headers)
    h, w = size
    mode = "L" if channels == 1 else "RGB"
    x = np.empty((len(files), channels, h, w), dtype=np.uint8)
    for i, p in enumerate(files):
        im = _load(p)
        try:
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "F") and mode == "L":
                a = np.asarray(im, dtype=np.float64)
                scale = 255.0 / 65535.0 if a.max(initial=0) > 255 else 1.0
                im = Image.fromarray(np.clip(np.rint(a * scale), 0, 255).astype(np.uint8))
            im = im.convert(mode)
            if im.size != (w, h):
                im = im.resize((w, h), Image.Resampling.LANCZOS)
            a = np.asarray(im, dtype=np.uint8)
        except Exception as exc:
            raise DataError(f"cannot convert image {p} ({exc}); fix or remove it") from None
        x[i] = a[None] if channels == 1 else a.transpose(2, 0, 1)
    n = len(files)
    n_test = int(np.floor(n * test_fraction + 0.5))
    n_va = int(np.floor(n * val_fraction + 0.5)) if n_val is None else n_val
    if isinstance(n_va, bool) or not isinstance(n_va, int | np.integer) or n_va < 0:
        raise DataError(f"n_val must be a non-negative integer, got {n_val!r}; fix data.n_val")
    if n_test + n_va >= n:
        raise DataError(
            f"{folder} has {n} images: {n_test} test + {n_va} validation leave none for training; "
            "add images or lower data.test_fraction / data.n_val (test_fraction / val_fraction / "
            "n_val when calling load_dataset)"
        )
    tr, va, te = seeded_three_way(n, n_test, n_va, seed)
    y = None if labels is None else np.asarray(labels, dtype=np.int64)
    pick = (lambda idx: None) if y is None else (lambda idx: y[idx])
    desc = (f"{len(class_names)} classes ({', '.join(class_names[:10])}"
            f"{', ...' if len(class_names) > 10 else ''})" if class_names else "unlabelled")
    notes = [f"image folder {folder}: {n} images, {desc}, {channels} channel(s), {h}x{w}; "
             f"seeded split test {n_test} / val {n_va} (seed {seed})"]
    return ImageSplits("folder", x[tr], pick(tr), x[va], pick(va), x[te], pick(te), notes)
