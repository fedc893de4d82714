"""Guarded image decoding: every image file is opened lazily, its header checked, then decoded.

PIL's ``Image.open`` reads only the header, so the dimensions are known before any pixel is
decoded. :func:`open_image` refuses, with a one-line :class:`DataError` naming the file:
an empty file, a file whose content is not one of :data:`FORMATS` (whatever its suffix says),
an image whose header claims more than :data:`MAX_IMAGE_PIXELS` pixels (PIL's own
decompression-bomb warning and error are turned into the same refusal), and a file that cannot
be read (permissions) or decoded (truncated, corrupt).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

from maevae.errors import DataError

__all__ = [
    "FORMATS",
    "MAX_IMAGE_FILE_BYTES",
    "MAX_IMAGE_PIXELS",
    "image_header",
    "load_image",
    "load_image_bytes",
]

# Formats the folder loader and the OMNIGLOT zips hold (PIL opens camera MPO files as JPEG).
FORMATS = ("PNG", "JPEG")
# Largest image maevae decodes: 8192 x 8192 (a 64 Mpx RGB image decodes to 192 MiB).
MAX_IMAGE_PIXELS = 1 << 26
# Largest image file read into memory (the zips' members are read whole).
MAX_IMAGE_FILE_BYTES = 256 << 20


def _too_big(label: str, w: int, h: int) -> DataError:
    return DataError(
        f"image {label} claims {w}x{h} = {w * h} pixels, above the limit of {MAX_IMAGE_PIXELS} "
        f"(maevae.data.images.MAX_IMAGE_PIXELS); shrink or remove it"
    )


def _open_checked(src, label: str):
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # PIL warns above 89 Mpx; our own limit (below it) is checked next, naming w x h
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(src, formats=FORMATS)
    except UnidentifiedImageError:
        raise DataError(f"cannot read image {label}: its content is not PNG or JPEG (whatever "
                        "its name says); fix or remove it") from None
    except Image.DecompressionBombError as exc:  # PIL refuses above 179 Mpx in open()
        raise DataError(f"image {label} is too large, above the limit of {MAX_IMAGE_PIXELS} "
                        f"pixels (PIL: {str(exc).split(',')[0]}); shrink or remove it") from None
    except PermissionError as exc:
        raise DataError(f"cannot read image {label}: {exc.strerror or exc}; check its "
                        "permissions") from None
    except Exception as exc:  # OSError, SyntaxError, struct.error, ... on corrupt headers
        raise DataError(f"cannot read image {label} ({exc}); fix or remove it") from None
    w, h = im.size
    if w * h > MAX_IMAGE_PIXELS:
        im.close()
        raise _too_big(label, w, h)
    if w < 1 or h < 1:
        im.close()
        raise DataError(f"image {label} has size {w}x{h}; fix or remove it")
    return im


def _check_file(path: Path) -> None:
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise DataError(f"image {path} does not exist (a broken link?); fix or remove it"
                        ) from None
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc.strerror or exc}") from None
    if size == 0:
        raise DataError(f"image {path} is empty (0 bytes); fix or remove it")


def image_header(path: str | Path) -> tuple[str, tuple[int, int]]:
    """(mode, (width, height)) of image file ``path`` from its header, checked, not decoded."""
    path = Path(path)
    _check_file(path)
    with _open_checked(path, str(path)) as im:
        return im.mode, im.size


def load_image(path: str | Path):
    """The decoded PIL image of file ``path`` (checked as :func:`image_header` first)."""
    path = Path(path)
    _check_file(path)
    return _decode(_open_checked(path, str(path)), str(path))


def load_image_bytes(data: bytes, label: str):
    """The decoded PIL image of the encoded bytes ``data``; ``label`` names it in errors."""
    if not data:
        raise DataError(f"image {label} is empty (0 bytes); fix or remove it")
    return _decode(_open_checked(io.BytesIO(data), label), label)


def _decode(im, label: str):
    from PIL import Image

    try:
        with im, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im.load()
            return im.copy()
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"cannot read image {label} ({exc}); fix or remove it") from None
