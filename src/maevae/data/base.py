"""The container every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maevae.errors import DataError

__all__ = ["ImageSplits"]

_FIX = {
    "train": "add images, or lower data.n_val / data.test_fraction",
    "val": "add images, or set data.n_val to at least 1 (it must leave training images)",
    "test": "add images, or raise data.test_fraction (image folders, zip-built OMNIGLOT)",
}


@dataclass
class ImageSplits:
    """Train / validation / test images of one dataset.

    Images are uint8 ``[N, C, H, W]`` (C = 1 grey, 3 colour) with intensity ``value / 255``;
    labels are int64 ``[N]`` or ``None`` when the dataset is unlabelled. ``notes`` are
    human-readable provenance lines for reports.

    ``root`` is the data root the loader read from (absolute; ``None`` when it used none:
    scikit-learn's digits, an image folder given by an absolute ``data.path``) and ``files``
    every data file it read (absolute paths), for runs to record
    (:mod:`maevae.data.provenance`). For an image folder ``folder`` is the folder and
    ``files`` its images.
    ``class_names[i]`` names label ``i`` (Fashion-MNIST's "T-shirt/top", a folder's class
    subfolders); ``None`` when the labels are their own names (digits 0-9) or the dataset is
    unlabelled.
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray | None
    val_x: np.ndarray
    val_y: np.ndarray | None
    test_x: np.ndarray
    test_y: np.ndarray | None
    notes: list[str] = field(default_factory=list)
    root: Path | None = None
    files: list[Path] = field(default_factory=list)
    folder: Path | None = None
    class_names: list[str] | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)

    def sizes(self) -> tuple[int, int, int]:
        """The number of images in ``(train, val, test)``."""
        return len(self.train_x), len(self.val_x), len(self.test_x)

    def validate(self) -> ImageSplits:
        """Check the invariants above; raise ValueError (a loader bug) when one fails."""
        shape = None
        for part in ("train", "val", "test"):
            x = getattr(self, f"{part}_x")
            y = getattr(self, f"{part}_y")
            if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4:
                raise ValueError(f"{self.name}: {part}_x must be uint8 [N, C, H, W]")
            if x.shape[1] not in (1, 3):
                raise ValueError(f"{self.name}: {part}_x must have 1 or 3 channels")
            if shape is not None and x.shape[1:] != shape:
                raise ValueError(f"{self.name}: {part}_x has shape {x.shape[1:]} != {shape}")
            shape = x.shape[1:]
            if y is not None and (y.dtype != np.int64 or y.shape != (len(x),)):
                raise ValueError(f"{self.name}: {part}_y must be int64 [{len(x)}]")
        return self

    def require_nonempty(self, parts: tuple[str, ...] = ("train", "val", "test")
                         ) -> ImageSplits:
        """Raise :class:`DataError` naming the first of ``parts`` that holds no images.

        Loading may give empty parts (library users ask for ``n_val=0``); training and
        evaluation call this, so an empty split is one clear line, not a crash later on.
        """
        for part in parts:
            if len(getattr(self, f"{part}_x")) == 0:
                ntr, nva, nte = self.sizes()
                raise DataError(
                    f"the {part} split of {self.name} is empty (train/val/test = "
                    f"{ntr}/{nva}/{nte} images); {_FIX[part]}"
                )
        return self

    def summary(self) -> str:
        """One line: the name, the split sizes and the image shape."""
        c, h, w = self.image_shape
        ntr, nva, nte = self.sizes()
        return f"{self.name}: {ntr}/{nva}/{nte} train/val/test images of {c}x{h}x{w}"
