"""Turning dataset images (uint8 [N, C, H, W]) into model inputs, in one place.

Binary models: dynamic binarisation for training (1 iff u < x/255, new every batch) and a
fixed number of seeded binarised copies for validation/test (SPEC §3.1). 8-bit models:
scaling to [-1, 1].
"""

from __future__ import annotations

import numpy as np
import torch

from maevae.config import DataConfig
from maevae.data.binarize import fixed_binarized_copies


def training_inputs(x_u8: torch.Tensor, cfg: DataConfig,
                    generator: torch.Generator | None) -> torch.Tensor:
    """A training batch: uint8 [B, C, H, W] -> float [B, C, H, W]."""
    if cfg.binarize:
        u = torch.rand(x_u8.shape, generator=generator, device=x_u8.device)
        return (u < x_u8.float() / 255.0).float()
    return x_u8.float() / 127.5 - 1.0


def evaluation_inputs(x_u8: np.ndarray, cfg: DataConfig, seed: int) -> tuple[torch.Tensor, int]:
    """Fixed evaluation copies: uint8 [N, ...] -> (float [copies·N, ...], copies).

    ``test_copies = 0`` (dynamic) returns the intensities; callers then binarise per pass.
    """
    if not cfg.binarize:
        return torch.from_numpy(x_u8).float() / 127.5 - 1.0, 1
    if cfg.test_copies == 0:
        return torch.from_numpy(x_u8).float() / 255.0, 0
    copies = fixed_binarized_copies(x_u8, cfg.test_copies, seed)
    return torch.from_numpy(copies).float(), cfg.test_copies


def redraw_dynamic(x: torch.Tensor, copies: int, generator: torch.Generator | None):
    """For dynamic evaluation (copies == 0): binarise intensities anew."""
    if copies != 0:
        return x
    return (torch.rand(x.shape, generator=generator, device=x.device) < x).float()


def data_dims(image_shape: tuple[int, int, int]) -> int:
    c, h, w = image_shape
    return c * h * w
