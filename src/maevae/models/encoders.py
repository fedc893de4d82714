"""Encoders x -> q(z|x) (SPEC §1.1): a diagonal Gaussian with unconstrained log-variance."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maevae.distributions import DiagGaussian
from maevae.nn.resnet import ResNetBlock, halvings
from maevae.nn.weightnorm import Conv2dWN, LinearWN


class ResNetEncoder(nn.Module):
    """Three stride-2 ResNet blocks (32, 64, 64), a conv that covers the remaining map,
    ELU, and a linear layer to (mu, logvar).

    For 1×28×28 this is the authors' ``resnet_binary_28x28`` (14, 7, 4, then a 4×4 conv to
    512×1×1; 703,872 parameters). Other sizes use the same layers with the last kernel
    equal to the remaining spatial size (8×8 digits: 4, 2, 1, then a 1×1 conv).
    """

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 32,
                 logvar_clip: float | None = None, widths=(32, 64, 64), features: int = 512):
        super().__init__()
        c, h, w = image_shape
        hs, ws = halvings(h), halvings(w)
        self.latent_dim, self.logvar_clip = latent_dim, logvar_clip
        chans = [c, *widths]
        self.blocks = nn.Sequential(*(ResNetBlock(chans[i], chans[i + 1], stride=2)
                                      for i in range(len(widths))))
        self.head = Conv2dWN(widths[-1], features, (hs[-1], ws[-1]))
        self.out = LinearWN(features, 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> DiagGaussian:
        h = F.elu(self.head(self.blocks(x)))  # [B, 512, 1, 1]
        h = self.out(h.flatten(1))  # [B, 2D]
        mu, logvar = h.chunk(2, dim=1)  # [B, D] each
        if self.logvar_clip is not None:
            logvar = F.hardtanh(logvar, -self.logvar_clip, self.logvar_clip)
        return DiagGaussian(mu, logvar)
