"""MADE2d: a masked CNN autoregressive over spatial positions (SPEC §1.6).

For a latent map z [N, C, H, W]::

    h   = ReLU(MaskA_k(z))                       C -> hidden
    h   = ReLU(MaskB_k(h) + h)                   hidden -> hidden, ``num_hidden - 1`` times
    out = MaskB_k(h) + MaskA_k^direct(z)         hidden -> C, plus a direct C -> C path

Every mask covers **all** input channels (``masked_channels=None``), so the output at
position p depends on the inputs at positions strictly before p in raster order (all
channels there) and not on any channel at p itself: the C channels at one position are
conditionally independent given the earlier positions. ``order="B"`` flips every mask,
so the output at p depends only on positions strictly after p. The k×k windows limit how
far back a position sees; the Jacobian is still block-triangular in raster order.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from maevae.nn.masked import MaskedConv2d

__all__ = ["MADE2d"]


class MADE2d(nn.Module):
    """[N, C, H, W] -> [N, C, H, W], spatially autoregressive in raster order ``order``."""

    def __init__(self, channels: int, hidden: int, order: Literal["A", "B"] = "A",
                 num_hidden: int = 3, kernel_size: int = 3, init_scale: float = 1.0):
        super().__init__()
        if num_hidden < 1:
            raise ValueError("MADE2d needs num_hidden >= 1")
        k = kernel_size
        self.top = MaskedConv2d(channels, hidden, k, "A", order=order, init_scale=init_scale)
        self.hidden = nn.ModuleList(
            MaskedConv2d(hidden, hidden, k, "B", order=order, init_scale=init_scale)
            for _ in range(num_hidden - 1))
        self.out = MaskedConv2d(hidden, channels, k, "B", order=order, init_scale=init_scale)
        self.direct = MaskedConv2d(channels, channels, k, "A", order=order,
                                   init_scale=init_scale)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z [N, C, H, W] -> [N, C, H, W], autoregressive over the C·H·W positions."""
        h = F.relu(self.top(z))  # [N, hidden, H, W]
        for layer in self.hidden:
            h = F.relu(layer(h) + h)  # residual
        return self.out(h) + self.direct(z)  # [N, C, H, W]
