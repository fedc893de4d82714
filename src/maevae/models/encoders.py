"""Encoders x -> q(z|x): a diagonal Gaussian with unconstrained log-variance.

* :class:`ResNetEncoder`: binary images (SPEC §1.1);
* :class:`DenseNetEncoder`: the paper's CIFAR-10 encoder (SPEC §1.5). Its latent is a
  feature map ``z_channels × H/4 × W/4``, returned FLATTENED to ``[B, D]`` in C, H, W order.

Either encoder optionally passes its means through BN-VAE's fixed-scale batch normalisation
(``bn_mu_scale`` = gamma; Zhu et al., 2020; :class:`~maevae.nn.batchnorm.FixedScaleBatchNorm`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maevae.distributions import DiagGaussian
from maevae.nn.batchnorm import FixedScaleBatchNorm
from maevae.nn.densenet import DenseNet
from maevae.nn.resnet import ResNetBlock, halvings
from maevae.nn.weightnorm import Conv2dWN, LinearWN

__all__ = ["DenseNetEncoder", "ResNetEncoder"]


class ResNetEncoder(nn.Module):
    """Three stride-2 ResNet blocks (32, 64, 64), a conv that covers the remaining map,
    ELU, and a linear layer to (mu, logvar).

    For 1×28×28 this is the authors' ``resnet_binary_28x28`` (14, 7, 4, then a 4×4 conv to
    512×1×1; 703,872 parameters). Other sizes use the same layers with the last kernel
    equal to the remaining spatial size (8×8 digits: 4, 2, 1, then a 1×1 conv).
    """

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 32,
                 logvar_clip: float | None = None, widths=(32, 64, 64), features: int = 512,
                 bn_mu_scale: float | None = None):
        super().__init__()
        c, h, w = image_shape
        hs, ws = halvings(h), halvings(w)
        self.latent_dim, self.logvar_clip = latent_dim, logvar_clip
        chans = [c, *widths]
        self.blocks = nn.Sequential(*(ResNetBlock(chans[i], chans[i + 1], stride=2)
                                      for i in range(len(widths))))
        self.head = Conv2dWN(widths[-1], features, (hs[-1], ws[-1]))
        self.out = LinearWN(features, 2 * latent_dim)
        # None (no parameters) when off: older checkpoints load unchanged
        self.mu_bn = None if bn_mu_scale is None else FixedScaleBatchNorm(latent_dim, bn_mu_scale)

    def forward(self, x: torch.Tensor) -> DiagGaussian:
        """The posterior q(z|x) of images x [B, C, H, W]: a diagonal Gaussian with mu, logvar
        [B, D]."""
        h = F.elu(self.head(self.blocks(x)))  # [B, 512, 1, 1]
        h = self.out(h.flatten(1))  # [B, 2D]
        mu, logvar = h.chunk(2, dim=1)  # [B, D] each
        if self.mu_bn is not None:
            mu = self.mu_bn(mu)
        if self.logvar_clip is not None:
            logvar = F.hardtanh(logvar, -self.logvar_clip, self.logvar_clip)
        return DiagGaussian(mu, logvar)


class DenseNetEncoder(nn.Module):
    """x [B, 3, H, W] in [-1, 1] -> q(z|x) with mu, logvar [B, z_channels * H/4 * W/4].

    DenseNet(3, 15, 3) -> WN 3×3 stride-2 conv + ELU -> DenseNet(48, 16, 3) -> WN 3×3
    stride-2 conv + ELU -> DenseNet(96, 16, 6) -> WN 1×1 192->96 + ELU -> WN 1×1 96->2·16,
    split into mu and logvar (logvar hardtanh-clipped to ±``logvar_clip``).
    """

    def __init__(self, image_shape: tuple[int, int, int] = (3, 32, 32), z_channels: int = 16,
                 logvar_clip: float | None = 7.0, growth=(15, 16, 16), steps=(3, 3, 6),
                 hidden: int = 96, bn_mu_scale: float | None = None):
        super().__init__()
        c, h, w = image_shape
        self.z_shape = (z_channels, h // 4, w // 4)
        self.latent_dim = z_channels * (h // 4) * (w // 4)
        self.logvar_clip = logvar_clip
        d1 = DenseNet(c, growth[0], steps[0])
        d2 = DenseNet(d1.out_ch, growth[1], steps[1])
        d3 = DenseNet(d2.out_ch, growth[2], steps[2])
        self.dense1, self.dense2, self.dense3 = d1, d2, d3
        self.down1 = Conv2dWN(d1.out_ch, d1.out_ch, 3, stride=2, padding=1)
        self.down2 = Conv2dWN(d2.out_ch, d2.out_ch, 3, stride=2, padding=1)
        self.head = Conv2dWN(d3.out_ch, hidden, 1)
        self.out = Conv2dWN(hidden, 2 * z_channels, 1)
        self.mu_bn = None if bn_mu_scale is None else FixedScaleBatchNorm(self.latent_dim,
                                                                            bn_mu_scale)

    def forward(self, x: torch.Tensor) -> DiagGaussian:
        """The posterior q(z|x) of images x [B, 3, H, W]: a diagonal Gaussian over
        z_channels × H/4 × W/4 feature maps, flattened to mu, logvar [B, D]."""
        h = F.elu(self.down1(self.dense1(x)))  # [B, 48, H/2, W/2]
        h = F.elu(self.down2(self.dense2(h)))  # [B, 96, H/4, W/4]
        h = self.out(F.elu(self.head(self.dense3(h))))  # [B, 2·zc, H/4, W/4]
        mu, logvar = h.chunk(2, dim=1)  # [B, zc, H/4, W/4] each
        if self.logvar_clip is not None:
            logvar = F.hardtanh(logvar, -self.logvar_clip, self.logvar_clip)
        mu = mu.flatten(1)  # [B, D]
        if self.mu_bn is not None:
            mu = self.mu_bn(mu)
        return DiagGaussian(mu, logvar.flatten(1))  # [B, D] each
