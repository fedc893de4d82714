"""The paper's CIFAR-10 model (SPEC §1.5-§1.8): DenseNet encoder, 2-D MADE flow prior,
PixelCNN++ decoder with a discretised logistic mixture.

Latents are feature maps ``z_channels × H/4 × W/4`` (16×8×8 for 32×32 images) but travel
through the VAE and the objectives FLATTENED to ``[B, D]`` (D = 1024 for CIFAR), in C, H, W
order; the prior and the decoder reshape them internally. ``model.encoder.latent_dim`` in
the config is the number of latent CHANNELS here (16), not D; ``model.prior.hidden`` is the
MADE2d hidden channels (128); the PixelCNN++ width (96), depth (3 levels × 6 blocks) and
conditioning width (16) are fixed, as in the authors' code (``decoder.channels``,
``decoder.mode`` and ``decoder.z_maps`` do not apply).

Parameter counts (``maevae.models.vae.count_parameters``, 3×32×32) equal the authors':
encoder 302,614; prior 5,358,592 (16 MADE2d × 334,912); decoder 42,740,960; total
48,402,166. The decoder count includes the authors' never-used first NIN pair of the
PixelCNN++ down pass (2 × 18,624 parameters; kept frozen, see :mod:`maevae.nn.pixelcnnpp`);
without it the decoder has 42,703,712.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from maevae.distributions import DiagGaussian, standard_normal_log_prob
from maevae.distributions_color import (
    discretized_logistic_mixture_log_prob,
    sample_discretized_logistic_mixture,
)
from maevae.nn.densenet import DenseNet
from maevae.nn.made2d import MADE2d
from maevae.nn.pixelcnnpp import PixelCNNpp
from maevae.nn.weightnorm import Conv2dWN, ConvTranspose2dWN


# -------------------------------------------------------------------------------- encoder
class DenseNetEncoder(nn.Module):
    """x [B, 3, H, W] in [-1, 1] -> q(z|x) with mu, logvar [B, z_channels * H/4 * W/4].

    DenseNet(3, 15, 3) -> WN 3×3 stride-2 conv + ELU -> DenseNet(48, 16, 3) -> WN 3×3
    stride-2 conv + ELU -> DenseNet(96, 16, 6) -> WN 1×1 192->96 + ELU -> WN 1×1 96->2·16,
    split into mu and logvar (logvar hardtanh-clipped to ±``logvar_clip``).
    """

    def __init__(self, image_shape: tuple[int, int, int] = (3, 32, 32), z_channels: int = 16,
                 logvar_clip: float | None = 7.0, growth=(15, 16, 16), steps=(3, 3, 6),
                 hidden: int = 96):
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

    def forward(self, x: torch.Tensor) -> DiagGaussian:
        h = F.elu(self.down1(self.dense1(x)))  # [B, 48, H/2, W/2]
        h = F.elu(self.down2(self.dense2(h)))  # [B, 96, H/4, W/4]
        h = self.out(F.elu(self.head(self.dense3(h))))  # [B, 2·zc, H/4, W/4]
        mu, logvar = h.chunk(2, dim=1)  # [B, zc, H/4, W/4] each
        if self.logvar_clip is not None:
            logvar = F.hardtanh(logvar, -self.logvar_clip, self.logvar_clip)
        return DiagGaussian(mu.flatten(1), logvar.flatten(1))  # [B, D] each


# -------------------------------------------------------------------------------- prior
class AF2dLayer(nn.Module):
    """Affine AF layer over z [N, C, H, W] with separate shift and log-variance MADE2d nets:
    eps = mu(z) + z * exp(s(z)/2), log|det| = sum s/2, exactly as
    :class:`~maevae.models.priors.AFLayer`."""

    def __init__(self, channels: int, hidden: int, order: Literal["A", "B"],
                 init_scale: float, num_hidden: int = 3, kernel_size: int = 3):
        super().__init__()
        self.shift = MADE2d(channels, hidden, order, num_hidden, kernel_size, init_scale)
        self.logvar = MADE2d(channels, hidden, order, num_hidden, kernel_size, init_scale)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Density direction: z [N, C, H, W] -> (eps [N, C, H, W], logdet [N])."""
        s = self.logvar(z)
        eps = self.shift(z) + z * (0.5 * s).exp()
        return eps, 0.5 * s.flatten(1).sum(1)

    @torch.no_grad()
    def inverse(self, eps: torch.Tensor) -> torch.Tensor:
        """Sampling direction, H·W sequential passes: eps [N, C, H, W] -> z.

        The fixed-point iteration ``z <- (eps - mu(z)) / exp(s(z)/2)`` from z = 0 fixes one
        more spatial position (all its channels) per pass, in either raster order.
        """
        z = torch.zeros_like(eps)
        for _ in range(eps.shape[2] * eps.shape[3]):
            z = (eps - self.shift(z)) / ((0.5 * self.logvar(z)).exp() + 1e-12)
        return z


class Made2dAFPrior(nn.Module):
    """``blocks`` dual blocks of (order-B, order-A) AF2d layers (density direction) over a
    flattened latent [..., C·H·W]; log p(z) = log N(eps; 0, I) + sum of log-dets."""

    def __init__(self, z_shape: tuple[int, int, int] = (16, 8, 8), blocks: int = 4,
                 hidden: int = 128, init_scale: float = 0.1, num_hidden: int = 3,
                 kernel_size: int = 3):
        super().__init__()
        self.z_shape = tuple(z_shape)
        c, h, w = self.z_shape
        self.latent_dim = c * h * w
        layers = []
        for _ in range(blocks):
            for order in ("B", "A"):
                layers.append(AF2dLayer(c, hidden, order, init_scale, num_hidden, kernel_size))
        self.layers = nn.ModuleList(layers)

    def to_base(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z [..., D] -> (eps [..., D], total logdet [...])."""
        lead = z.shape[:-1]
        x = z.reshape(-1, *self.z_shape)  # [N, C, H, W]
        logdet = torch.zeros(x.shape[0], dtype=z.dtype, device=z.device)
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x.reshape(*lead, self.latent_dim), logdet.reshape(lead)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z): [..., D] -> [...]."""
        eps, logdet = self.to_base(z)
        return standard_normal_log_prob(eps) + logdet

    @torch.no_grad()
    def from_base(self, eps: torch.Tensor) -> torch.Tensor:
        """eps [..., D] -> z [..., D] (exact inverse of :meth:`to_base`)."""
        lead = eps.shape[:-1]
        x = eps.reshape(-1, *self.z_shape)
        for layer in reversed(self.layers):
            x = layer.inverse(x)
        return x.reshape(*lead, self.latent_dim)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """n samples [n, D] (64 sequential MADE2d passes per AF layer for 8×8 latents)."""
        dtype = next(self.parameters()).dtype
        eps = torch.randn(n, self.latent_dim, generator=generator, device=device, dtype=dtype)
        return self.from_base(eps)


# -------------------------------------------------------------------------------- decoder
class PixelCNNppDecoder(nn.Module):
    """p(x|z): PixelCNN++ conditioned on h(z), with a discretised logistic mixture.

    z [N, D] -> [N, zc, H/4, W/4] -> WN transposed 3×3 stride 2 (zc -> 8) + ELU -> WN
    transposed 3×3 stride 2 (8 -> 4) + ELU -> WN 1×1 (4 -> h_channels): h [N, 16, H, W].
    PixelCNN++(x, h) -> ELU -> WN 1×1 96->96 -> ELU -> WN 1×1 96->10·nmix.
    """

    def __init__(self, image_shape: tuple[int, int, int] = (3, 32, 32), z_channels: int = 16,
                 h_channels: int = 16, channels: int = 96, levels: int = 3,
                 num_resnets: int = 6, nmix: int = 10, dropout: float = 0.5,
                 sample_mixture: Literal["argmax", "categorical"] = "argmax",
                 unused_first_nin: bool = True):
        super().__init__()
        c, h, w = image_shape
        if c != 3:
            raise ValueError("the discretised logistic mixture models 3-channel (RGB) images")
        self.image_shape = tuple(image_shape)
        self.z_shape = (z_channels, h // 4, w // 4)
        self.nmix, self.sample_mixture = nmix, sample_mixture
        self.z_up1 = ConvTranspose2dWN(z_channels, 8, 3, stride=2, padding=1, output_padding=1)
        self.z_up2 = ConvTranspose2dWN(8, 4, 3, stride=2, padding=1, output_padding=1)
        self.z_h = Conv2dWN(4, h_channels, 1)
        self.core = PixelCNNpp(c, channels, levels, num_resnets, h_channels, dropout,
                               unused_first_nin)
        self.head1 = Conv2dWN(channels, channels, 1)
        self.head2 = Conv2dWN(channels, 10 * nmix, 1)

    def conditioning(self, z: torch.Tensor) -> torch.Tensor:
        """z [N, D] -> h [N, h_channels, H, W]."""
        h = F.elu(self.z_up1(z.reshape(-1, *self.z_shape)))  # [N, 8, H/2, W/2]
        h = F.elu(self.z_up2(h))  # [N, 4, H, W]
        return self.z_h(h)  # [N, 16, H, W]

    def params_from_h(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Teacher-forced mixture parameters: x [N, 3, H, W], h -> [N, 10·nmix, H, W]."""
        out = self.core(x, h)  # [N, 96, H, W]
        return self.head2(F.elu(self.head1(F.elu(out))))

    def params(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x [N, 3, H, W], z [N, D] -> mixture parameters [N, 10·nmix, H, W]."""
        return self.params_from_h(x, self.conditioning(z))

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) in nats: x [B, 3, H, W] in [-1, 1], z [S, B, D] -> [S, B]."""
        s, b = z.shape[:2]
        xs = x.unsqueeze(0).expand(s, *x.shape).reshape(s * b, *x.shape[1:])  # [S*B, 3, H, W]
        params = self.params(xs, z.reshape(s * b, -1))  # [S*B, 10·nmix, H, W]
        return discretized_logistic_mixture_log_prob(xs.float(), params.float(),
                                                     self.nmix).view(s, b)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, greedy: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral sampling in raster order, H·W full passes: z [N, D] -> x [N, 3, H, W].

        At each pixel the mixture component is the arg-max of the logits (the authors'
        rule, even when sampling; ``sample_mixture="categorical"`` samples it instead).
        ``greedy`` (reconstructions) takes the component's mean instead of adding logistic
        noise. Channel conditioning uses the clamped R and G; values lie in [-1, 1] and are
        not snapped to the 8-bit grid. Runs in eval mode (no dropout).
        """
        was_training = self.training
        self.eval()
        try:
            _, hh, ww = self.image_shape
            h = self.conditioning(z)
            x = torch.zeros(z.shape[0], *self.image_shape, device=z.device, dtype=h.dtype)
            for r in range(hh):
                for c in range(ww):
                    p = self.params_from_h(x, h)[:, :, r:r + 1, c:c + 1]  # [N, 10K, 1, 1]
                    x[:, :, r:r + 1, c:c + 1] = sample_discretized_logistic_mixture(
                        p.float(), self.nmix, greedy, self.sample_mixture, generator).to(x.dtype)
        finally:
            self.train(was_training)
        return x


# -------------------------------------------------------------------------------- builder
def build_color_model(cfg, image_shape: tuple[int, int, int]):
    """The CIFAR-10 VAE from a :class:`~maevae.config.ModelConfig`.

    Needs encoder.type=densenet with decoder.type=pixelcnnpp on 3-channel images whose sides
    are divisible by 4 (the paper: 3×32×32, latent 16×8×8); prior.type af (MADE2d flow) or
    normal.
    """
    from maevae.errors import ConfigError
    from maevae.models.priors import StandardNormalPrior
    from maevae.models.vae import VAE

    enc, dec, pri = cfg.encoder, cfg.decoder, cfg.prior
    if enc.type != "densenet" or dec.type != "pixelcnnpp":
        raise ConfigError(f"encoder {enc.type!r} with decoder {dec.type!r} is not supported: "
                          "the colour model needs model.encoder.type=densenet together with "
                          "model.decoder.type=pixelcnnpp (binary images: resnet with "
                          "pixelcnn or resnet)")
    c, h, w = image_shape
    if c != 3 or h % 4 or w % 4 or min(h, w) < 8:
        raise ConfigError(f"the densenet/pixelcnnpp model needs 3-channel images with sides "
                          f"divisible by 4 and >= 8 (CIFAR-10: 3x32x32), got {c}x{h}x{w}")
    encoder = DenseNetEncoder(image_shape, enc.latent_dim, enc.logvar_clip)
    decoder = PixelCNNppDecoder(image_shape, enc.latent_dim, nmix=dec.nmix, dropout=dec.dropout)
    if pri.type == "af":
        prior = Made2dAFPrior(encoder.z_shape, pri.blocks, pri.hidden, pri.init_scale)
    else:
        prior = StandardNormalPrior(encoder.latent_dim)
    return VAE(encoder, decoder, prior, image_shape)
