"""The PixelCNN core of the binary-image decoder (SPEC §1.2).

Layout for kernels k = [k0, …, k_{n-1}] (small: [7,7,7,5,5,3,3]; large: 13 kernels)::

    L0 = ELU(MaskA_{k0}(input))                 mask on the image channel only
    L_i = Block_i(L_{i-1})                        i = 1, 2
    L_i = Block_i(L_{i-1} + Skip_{i-3}(L_{i-3}))  i = 3 … n-1
    out = L_{n-1} + Skip_{n-3}(L_{n-3})

Every Block / Skip is a residual bottleneck
``ELU(x + 1x1(C/2 -> C)(ELU(MaskB_k(C/2 -> C/2)(ELU(1x1(C -> C/2)(x))))))``.
``skips=False`` drops the skip ("direct") blocks, giving the paper's literal description
(six masked layers) when used with kernels [7,7,5,5,3,3].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from maevae.nn.masked import MaskedConv2d
from maevae.nn.weightnorm import Conv2dWN

__all__ = ["Bottleneck", "PixelCNN"]


class Bottleneck(nn.Module):
    """Residual bottleneck with a mask-B k×k convolution in the middle; shape-preserving."""

    def __init__(self, channels: int, k: int):
        super().__init__()
        half = channels // 2
        self.reduce = Conv2dWN(channels, half, 1)
        self.masked = MaskedConv2d(half, half, k, "B")
        self.expand = Conv2dWN(half, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, C, H, W] -> [N, C, H, W]: reduce, a masked convolution, expand, plus x."""
        h = F.elu(self.reduce(x))
        h = F.elu(self.masked(h))
        return F.elu(x + self.expand(h))


class PixelCNN(nn.Module):
    """x: [N, in_ch, H, W] (image channel first) -> features [N, channels, H, W]."""

    def __init__(self, in_ch: int, channels: int, kernels: list[int], masked_channels: int = 1,
                 skips: bool = True):
        super().__init__()
        n = len(kernels)
        if n < 3 and skips:
            raise ValueError("PixelCNN with skip blocks needs at least 3 kernels")
        self.kernels = list(kernels)
        self.first = MaskedConv2d(in_ch, channels, kernels[0], "A", masked_channels=masked_channels)
        self.blocks = nn.ModuleList(Bottleneck(channels, k) for k in kernels[1:])
        self.skips = nn.ModuleList(Bottleneck(channels, k) for k in kernels[1:n - 1]) if skips \
            else nn.ModuleList()

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None,
                head: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Images x [N, C_in, H, W] -> causal features [N, C, H, W] (each pixel sees only the
        pixels before it in raster order), or ``head(features)`` if a head is given.

        With ``cond`` [S*B, C_in - m, H, W] (the unmasked channels, sample-major), x holds
        only the m masked channels [B, m, H, W] of B images shared by S samples each: the
        result is that of ``cat([x repeated S times, cond])`` without repeating x (the
        first layer's image part runs once per image, :meth:`MaskedConv2d.forward_shared`).
        ``head`` (a per-pixel function of the features, e.g. the decoder's output layers)
        runs inside this forward, so that a compiled core compiles it in the same graph.
        """
        out = self._features(x, cond)
        return out if head is None else head(out)

    def _features(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        first = self.first(x) if cond is None else self.first.forward_shared(x, cond)
        layers = [F.elu(first)]
        if not len(self.skips):
            for block in self.blocks:
                layers.append(block(layers[-1]))
            return layers[-1]
        for i, block in enumerate(self.blocks, start=1):
            inp = layers[i - 1] if i <= 2 else layers[i - 1] + self.skips[i - 3](layers[i - 3])
            layers.append(block(inp))
        n = len(self.kernels)
        return layers[n - 1] + self.skips[n - 3](layers[n - 3])
