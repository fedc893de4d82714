"""The one place where dataset images (uint8 [N, C, H, W]) become model input, and back.

Binary models (``binarize``; SPEC §3.1):

* training: dynamic binarisation, 1 iff u < x/255 with u ~ U[0, 1) drawn anew every batch
  (:func:`training_inputs`);
* validation / test: a fixed number of seeded binarised copies (:func:`evaluation_inputs`),
  or, with ``test_copies = 0``, the intensities, binarised anew at every pass
  (:func:`redraw_dynamic`);
* encoding for the probes, reconstructions: the images thresholded at 0.5
  (:func:`model_inputs`).

8-bit (colour) models: every path scales to [-1, 1]. :func:`to_unit` maps model-space
images back to [0, 1] for figures.

The ``cfg`` arguments are a run's ``DataConfig`` (any object with its ``binarize`` and
``test_copies`` attributes): ``data`` sits below ``config`` and does not import it.
"""

from __future__ import annotations

import numpy as np
import torch

from maevae.data.binarize import dynamic_binarize, fixed_binarized_copies, threshold

__all__ = [
    "data_dims",
    "evaluation_inputs",
    "model_inputs",
    "redraw_dynamic",
    "scale_8bit",
    "to_unit",
    "training_inputs",
]


def scale_8bit(x_u8: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float in [-1, 1] (the PixelCNN++ input)."""
    return x_u8.float() / 127.5 - 1.0


def training_inputs(x_u8: torch.Tensor, cfg, generator: torch.Generator | None) -> torch.Tensor:
    """A training batch: uint8 [B, C, H, W] -> float [B, C, H, W]."""
    if cfg.binarize:
        return dynamic_binarize(x_u8, generator)
    return scale_8bit(x_u8)


def evaluation_inputs(x_u8: np.ndarray, cfg, seed: int) -> tuple[torch.Tensor, int]:
    """Fixed evaluation copies: uint8 [N, ...] -> (float [copies·N, ...], copies).

    ``test_copies = 0`` (dynamic) returns the intensities; callers then binarise per pass.
    """
    if not cfg.binarize:
        return scale_8bit(torch.from_numpy(x_u8)), 1
    if cfg.test_copies == 0:
        return torch.from_numpy(x_u8).float() / 255.0, 0
    copies = fixed_binarized_copies(x_u8, cfg.test_copies, seed)
    return torch.from_numpy(copies).float(), cfg.test_copies


def redraw_dynamic(x: torch.Tensor, copies: int, generator: torch.Generator | None):
    """For dynamic evaluation (copies == 0): binarise intensities anew."""
    if copies != 0:
        return x
    return dynamic_binarize(x, generator)


def model_inputs(x_u8: np.ndarray | torch.Tensor, binarize: bool) -> torch.Tensor:
    """uint8 [N, C, H, W] -> model input: thresholded at 0.5 (binary) or scaled to [-1, 1]."""
    x = x_u8 if torch.is_tensor(x_u8) else torch.from_numpy(np.ascontiguousarray(x_u8))
    return threshold(x) if binarize else scale_8bit(x)


def to_unit(x: torch.Tensor, binarize: bool) -> torch.Tensor:
    """Model-space images -> float CPU tensor in [0, 1] (for figures)."""
    x = x.detach().float().cpu()
    return x if binarize else (x + 1.0) / 2.0


def data_dims(image_shape: tuple[int, int, int]) -> int:
    """Number of data dimensions C·H·W (free bits per data dimension, bits/dim)."""
    c, h, w = image_shape
    return c * h * w
