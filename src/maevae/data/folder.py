"""A user's folder of PNG / JPEG images.

Layouts: flat (all images directly in the folder: unlabelled) or one subfolder per class
(labels = index of the subfolder name in sorted order; images anywhere below a class folder).
Hidden files and other file types are ignored. Symlinks are followed and each real folder is
walked once: a link to the dataset folder or one of its ancestors (a loop), or a second path to
a folder already walked, is refused with a DataError naming the link. Images are decoded by
:mod:`maevae.data.images` (PNG/JPEG content only, a pixel limit checked from the header).

Channels: ``channels=1`` (grey) or ``3`` (RGB); by default grey when every image is a grey
mode (1, L, LA, I, I;16, F), else RGB. Size: ``image_size=(H, W)`` resizes every image
(Lanczos); without it every image must have the same size.

Split: a ``default_rng(seed)`` shuffle; the first ``round(N * test_fraction)`` images are the
test set, the next ``round(N * val_fraction)`` (or ``n_val``) the validation set, the rest train
(defaults 10% / 10%). Each part keeps the sorted file order.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from maevae.data.base import ImageSplits
from maevae.data.images import image_header, load_image
from maevae.data.splits import seeded_three_way
from maevae.errors import DataError

__all__ = [
    "EXTENSIONS",
    "GREY_MODES",
    "MAX_ARRAY_BYTES",
    "infer_image_size",
    "list_images",
    "load_folder",
]

EXTENSIONS = (".png", ".jpg", ".jpeg")
# Largest uint8 array a folder dataset becomes (N x C x H x W bytes).
MAX_ARRAY_BYTES = 16 << 30
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and Path(name).suffix.lower() in EXTENSIONS


def _dir_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()  # follows links
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _scan(d: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(d) as it:
            return sorted(it, key=lambda e: e.name)
    except PermissionError as exc:
        raise DataError(f"cannot list the image folder {d}: {exc.strerror or exc}; check its "
                        "permissions") from None
    except OSError as exc:
        raise DataError(f"cannot list the image folder {d}: {exc.strerror or exc}") from None


class _Walk:
    """Walks a dataset folder following symlinks, entering each real directory once.

    A directory met a second time -- a symlink to the dataset folder or one of its ancestors
    (a loop), or a second path to a folder already walked -- is refused, naming the link.
    """

    def __init__(self, root: Path):
        self.root = root
        self.ancestors: dict[tuple[int, int], Path] = {}
        for a in (root, *root.resolve().parents):
            i = _dir_id(a)
            if i is not None:
                self.ancestors.setdefault(i, a)
        self.seen: dict[tuple[int, int], Path] = {}

    def enter(self, d: Path) -> None:
        i = _dir_id(d)
        if i is None:
            return
        if i in self.ancestors and d != self.root:
            raise DataError(
                f"{d} links to {self.ancestors[i]}, which contains it (a symlink loop); maevae "
                "follows each real folder once: remove the link"
            )
        if i in self.seen:
            raise DataError(
                f"{d} is a second path to {self.seen[i]} (a symlink), so its images would count "
                "twice; maevae follows each real folder once: remove one of the two"
            )
        self.seen[i] = d

    def images(self, d: Path) -> list[Path]:
        """Every image below ``d`` (hidden entries skipped), sorted."""
        self.enter(d)
        out, stack = [], [d]
        while stack:
            cur = stack.pop()
            for e in _scan(cur):
                if e.name.startswith("."):
                    continue
                p = cur / e.name
                if e.is_dir():  # follows links
                    self.enter(p)
                    stack.append(p)
                elif e.is_file() and _is_image_name(e.name):
                    out.append(p)
        return sorted(out)


def list_images(folder: Path) -> tuple[list[Path], list[int] | None, list[str]]:
    """Return (files, labels or None, class names)."""
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist or is not a folder")
    walk = _Walk(folder)
    walk.enter(folder)
    entries = _scan(folder)
    loose = [folder / e.name for e in entries if e.is_file() and _is_image_name(e.name)]
    classes = []
    for e in entries:
        if e.name.startswith(".") or not e.is_dir():
            continue
        files = walk.images(folder / e.name)
        if files:
            classes.append((e.name, files))
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
    return image_header(path)


def _load(path: Path):
    return load_image(path)


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
    """An :class:`~maevae.data.ImageSplits` of the images in ``folder`` (one subfolder
    per class gives labels; a flat folder is unlabelled), resized to ``image_size``, grey
    (``channels=1``) or RGB (3), split by a seeded shuffle into ``test_fraction`` /
    ``val_fraction`` (or ``n_val``) / the rest."""
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
    need = len(files) * channels * h * w
    if need > MAX_ARRAY_BYTES:
        raise DataError(
            f"{folder}: {len(files)} images of {channels}x{h}x{w} need {need / 2**30:.1f} GiB, "
            f"above the limit of {MAX_ARRAY_BYTES / 2**30:.0f} GiB; set data.image_size smaller "
            "or use fewer images"
        )
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
    return ImageSplits("folder", x[tr], pick(tr), x[va], pick(va), x[te], pick(te), notes,
                       files=list(files), folder=folder,
                       class_names=list(class_names) if class_names else None)
