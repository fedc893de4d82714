"""The raster-order (autoregressive) k×k mask of PixelCNN-style masked convolutions
(SPEC §1.0, §1.2): one builder for :func:`maevae.nn.masked.conv_mask` and the causal
decompositions of :mod:`maevae.nn.causal`.
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = ["raster_mask"]


def raster_mask(k: int, mask_type: Literal["A", "B"], order: Literal["A", "B"] = "A",
                dtype: torch.dtype | None = None,
                device: torch.device | str | None = None) -> torch.Tensor:
    """The k×k raster-order mask [k, k] (1 = tap used), centre c = k // 2.

    For k = 5, order "A" (centre row marked ``<-``)::

        mask A          mask B
        1 1 1 1 1       1 1 1 1 1
        1 1 1 1 1       1 1 1 1 1
        1 1 0 0 0       1 1 1 0 0     <- centre row: A drops the centre, B keeps it
        0 0 0 0 0       0 0 0 0 0
        0 0 0 0 0       0 0 0 0 0

    ``order="B"`` flips it in both axes (reverse raster order, used by flows): the rows
    below the centre and the right part of the centre row.
    """
    c = k // 2
    m2d = torch.ones(k, k, dtype=dtype, device=device)
    m2d[c, c + (mask_type == "B"):] = 0  # centre row: the centre (A) and everything right of it
    m2d[c + 1:, :] = 0  # every row below the centre
    return m2d.flip(0).flip(1) if order == "B" else m2d
