"""ResNet blocks of the binary-image encoder and of the ResNet-VAE decoder (SPEC §1.1, §1.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maevae.nn.weightnorm import Conv2dWN, ConvTranspose2dWN

__all__ = ["DeconvResNetBlock", "ResNetBlock", "halvings"]


class ResNetBlock(nn.Module):
    """``ELU(conv2(ELU(conv1(x))) + shortcut(x))``; conv1 is 3×3 with stride s.

    The shortcut is a 1×1 WN conv with stride s when the stride or the width changes.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = Conv2dWN(in_ch, out_ch, 3, stride=stride, padding=1)
        self.conv2 = Conv2dWN(out_ch, out_ch, 3, padding=1)
        self.shortcut = (Conv2dWN(in_ch, out_ch, 1, stride=stride)
                         if stride != 1 or in_ch != out_ch else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, C_in, H, W] -> [N, C_out, H', W']: two convolutions plus the (projected) input."""
        h = self.conv2(F.elu(self.conv1(x)))
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.elu(h + skip)


class DeconvResNetBlock(nn.Module):
    """Pre-activation transposed-conv block: ``deconv(ELU(deconv(ELU(x)))) + shortcut(ELU(x))``.

    No activation after the add (SPEC §1.3).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 2, output_padding: int = 0):
        super().__init__()
        self.deconv1 = ConvTranspose2dWN(in_ch, out_ch, 3, stride=stride, padding=1,
                                         output_padding=output_padding)
        self.deconv2 = ConvTranspose2dWN(out_ch, out_ch, 3, padding=1)
        self.shortcut = ConvTranspose2dWN(in_ch, out_ch, 1, stride=stride,
                                          output_padding=output_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, C_in, H, W] -> [N, C_out, ~sH, ~sW] (s the stride): two transposed convolutions of
        ELU(x) plus its 1×1 transposed-convolution shortcut."""
        x = F.elu(x)
        return self.deconv2(F.elu(self.deconv1(x))) + self.shortcut(x)


def halvings(size: int, n: int = 3) -> list[int]:
    """Spatial sizes after n stride-2 / padding-1 / 3×3 convs: [size, ceil(size/2), ...]."""
    sizes = [size]
    for _ in range(n):
        sizes.append((sizes[-1] - 1) // 2 + 1)
    return sizes
