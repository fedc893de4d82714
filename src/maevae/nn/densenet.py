"""DenseNet blocks of the CIFAR-10 encoder (SPEC §1.5).

``DenseNet(c, g, steps)``: each step computes ``new = Conv3x3(ELU(Conv1x1(x)))`` with
c -> 4g -> g channels (weight-normalised), then ``x <- ELU(concat[x, new])``; the channel
count grows by g per step, to ``c + g * steps``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maevae.nn.weightnorm import Conv2dWN

__all__ = ["DenseNet", "DenseStep"]


class DenseStep(nn.Module):
    """[N, c, H, W] -> [N, c + g, H, W]."""

    def __init__(self, in_ch: int, growth: int):
        super().__init__()
        self.bottleneck = Conv2dWN(in_ch, 4 * growth, 1)
        self.conv = Conv2dWN(4 * growth, growth, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, c, H, W] -> [N, c + g, H, W]: x with g new feature maps appended."""
        new = self.conv(F.elu(self.bottleneck(x)))  # [N, g, H, W]
        return F.elu(torch.cat([x, new], dim=1))  # [N, c + g, H, W]


class DenseNet(nn.Module):
    """``steps`` dense steps of growth ``growth``: [N, c, H, W] -> [N, c + g*steps, H, W]."""

    def __init__(self, in_ch: int, growth: int, steps: int):
        super().__init__()
        self.steps = nn.Sequential(*(DenseStep(in_ch + i * growth, growth) for i in range(steps)))
        self.out_ch = in_ch + growth * steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, c, H, W] through the dense steps: [N, c + steps·g, H, W]."""
        return self.steps(x)
