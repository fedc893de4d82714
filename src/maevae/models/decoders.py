"""Decoders p(x|z).

* Binary images (SPEC §1.2, §1.3): :class:`PixelCNNDecoder` and :class:`ResNetDecoder`
  return Bernoulli *logits* (sigmoid(logits) = p).
* Colour images (SPEC §1.7, §1.8): :class:`PixelCNNppDecoder`, the paper's CIFAR-10
  decoder, a PixelCNN++ conditioned on z with a discretised logistic mixture.

Every ``log_prob`` broadcasts one image batch x [B, C, H, W] over S latent samples
z [S, B, D] and returns [S, B] in nats.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from maevae.device import at_least_fp32, full_precision
from maevae.distributions import bernoulli_log_prob
from maevae.distributions.logistic_mixture import (
    discretized_logistic_mixture_log_prob,
    sample_discretized_logistic_mixture,
)
from maevae.nn.pixelcnn import PixelCNN
from maevae.nn.pixelcnnpp import PixelCNNpp
from maevae.nn.resnet import DeconvResNetBlock, halvings
from maevae.nn.weightnorm import Conv2dWN, ConvTranspose2dWN, LinearWN

__all__ = ["KERNELS", "PixelCNNDecoder", "PixelCNNppDecoder", "ResNetDecoder"]

KERNELS = {
    "small": [7, 7, 7, 5, 5, 3, 3],
    "large": [7, 7, 7, 7, 7, 5, 5, 5, 5, 3, 3, 3, 3],
    "paper_literal_6": [7, 7, 5, 5, 3, 3],
}


def _is_compiled(module: nn.Module) -> bool:
    """True for a ``torch.compile``'d module (wrapper or ``Module.compile`` in place)."""
    if getattr(module, "_compiled_call_impl", None) is not None:
        return True
    return type(module).__name__ == "OptimizedModule" and hasattr(module, "_orig_mod")


class _BinaryDecoder(nn.Module):
    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z): x [B, C, H, W], z [S, B, D] -> [S, B]."""
        s, b = z.shape[:2]
        xs = x.unsqueeze(0).expand(s, *x.shape).reshape(s * b, *x.shape[1:])  # [S*B, C, H, W]
        logits = self._sample_logits(x, xs, z.reshape(s * b, -1))  # [S*B, C, H, W]
        return bernoulli_log_prob(logits.float(), xs.float()).view(s, b)

    def _sample_logits(self, x: torch.Tensor, xs: torch.Tensor, z: torch.Tensor
                       ) -> torch.Tensor:
        """The logits of :meth:`log_prob`: x [B, C, H, W], xs = x repeated per sample
        [S*B, C, H, W], z [S*B, D] (sample-major) -> [S*B, C, H, W]."""
        return self.logits(xs, z)


class PixelCNNDecoder(_BinaryDecoder):
    """z -> WN linear -> 4 maps of H×W -> ELU, concatenated after the image channel(s),
    then a masked PixelCNN and a 1×1 head (64 -> 64, ELU, 64 -> C)."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 32,
                 mode: str = "small", channels: int = 64, z_maps: int = 4):
        super().__init__()
        c, h, w = image_shape
        if c != 1:
            raise ValueError("the binary PixelCNN decoder models one channel")
        self.image_shape, self.z_maps = image_shape, z_maps
        self.z_linear = LinearWN(latent_dim, z_maps * h * w)
        self.core = PixelCNN(c + z_maps, channels, KERNELS[mode], masked_channels=c,
                             skips=mode != "paper_literal_6")
        self.head1 = Conv2dWN(channels, channels, 1)
        self.head2 = Conv2dWN(channels, c, 1)

    # log_prob: the first layer's image part once per image and broadcast over the samples
    # (True), on the image repeated per sample (False), or "auto": shared when the PixelCNN
    # core is compiled, where the broadcast add fuses into the ELU after it. Eagerly the add
    # is one more pass over the layer's output (and, in bf16, one more rounding of it),
    # which costs more than the ~11% of the first layer (<1% of a sample) that it saves.
    share_image: bool | Literal["auto"] = "auto"
    # the output head runs inside the core's forward (True), so that a compiled core compiles
    # it into its graph: its input cast and ELU fuse into the core's last kernel, and the
    # 64 -> 1 layer becomes a fused channel sum; False runs it after the core, as before.
    head_in_core: bool = True

    def shares_image(self) -> bool:
        """Whether :meth:`log_prob` computes the first layer's image part once per image."""
        if self.share_image == "auto":
            return _is_compiled(self.core)
        return bool(self.share_image)

    def _sample_logits(self, x: torch.Tensor, xs: torch.Tensor, z: torch.Tensor
                       ) -> torch.Tensor:
        """The logits of :meth:`log_prob`. With :meth:`shares_image` the image part of the
        first (mask-A) convolution is computed once per image x [B, C, H, W] and broadcast
        over the samples (equal to the repeated input xs up to rounding)."""
        if not self.shares_image():
            return self.logits(xs, z)
        return self._core_head(x, self.z_features(z))  # logits [S*B, C, H, W]

    def z_features(self, z: torch.Tensor) -> torch.Tensor:
        """z [N, D] -> ELU'd feature maps [N, z_maps, H, W] (computed once per sample)."""
        _, h, w = self.image_shape
        return F.elu(self.z_linear(z)).view(-1, self.z_maps, h, w)  # [N, 4, H, W]

    def logits_from_features(self, x: torch.Tensor, zf: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits [N, C, H, W] of the images ``x`` [N, C, H, W] given the z feature
        maps ``zf`` [N, z_maps, H, W]; the output head runs in fp32."""
        return self._core_head(torch.cat([x, zf], dim=1))  # [N, C+4, H, W] -> [N, C, H, W]

    def _core_head(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """The core then the head: its inputs -> logits [N, C, H, W]."""
        if self.head_in_core:
            return self.core(x, cond, head=self._head)
        return self._head(self.core(x, cond))

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        """The output head on the core's features h [N, 64, H, W] -> logits [N, C, H, W]."""
        with full_precision(h.device):  # the logits in fp32: halves the bf16 NLL error, ~free
            g = F.elu(self.head1(at_least_fp32(h)))  # [N, 64, H, W]
            one = self.head2.out_ch == 1 and not self.head2._ddi_pending
            if one and torch.compiler.is_compiling():
                # traced: a channel sum that fuses into the ELU's kernel instead of a
                # 64 -> 1 convolution (an extern call at <1% of the peak); the same function
                w = self.head2.weight()  # [1, 64, 1, 1]
                return (g * w).sum(1, keepdim=True) + self.head2.bias.view(1, 1, 1, 1)
            return self.head2(g)

    def logits(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits: x [N, C, H, W], z [N, D] -> [N, C, H, W]."""
        return self.logits_from_features(x, self.z_features(z))

    @torch.no_grad()
    def sample(self, z: torch.Tensor, greedy: bool = False,
               generator: torch.Generator | None = None,
               on_row: Callable[[int], None] | None = None) -> torch.Tensor:
        """Ancestral sampling in raster order (H·W sequential passes); z [N, D] -> x [N, C, H, W].

        ``greedy`` thresholds p >= 0.5 instead of sampling (used for reconstructions).
        ``on_row(1)`` is called after each image row (progress; H calls in all).
        The z feature maps are computed once; each pass only recomputes the rows that can
        reach the current row: ``sum(k // 2)`` image rows above it, and ``k0 // 2`` rows
        below it, whose z maps the first layer sees (the image there is still zero).
        """
        c, h, w = self.image_shape
        zf = self.z_features(z)
        x = torch.zeros(z.shape[0], c, h, w, device=z.device, dtype=zf.dtype)
        reach = sum(k // 2 for k in self.core.kernels) + 1  # image rows above that can matter
        below = self.core.kernels[0] // 2  # the first layer sees z maps this far below
        for r in range(h):
            top, bottom = max(0, r - reach), min(h, r + 1 + below)
            fs = zf[:, :, top:bottom]  # [N, 4, rows, W]
            for col in range(w):
                logits = self.logits_from_features(x[:, :, top:bottom], fs)
                p = torch.sigmoid(logits[:, :, r - top, col])  # [N, C]
                if greedy:
                    v = (p >= 0.5).to(x.dtype)
                else:
                    v = (torch.rand(p.shape, generator=generator, device=p.device) < p).to(x.dtype)
                x[:, :, r, col] = v
            if on_row is not None:
                on_row(1)
        return x


class ResNetDecoder(_BinaryDecoder):
    """Factorised decoder of the "ResNet VAE w. AF" baseline: z as D×1×1 -> 4×4 transposed
    conv to 64×4×4 -> deconv-ResNet blocks [64, 32, C] (stride 2) -> logits."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 32,
                 widths=(64, 32)):
        super().__init__()
        c, h, w = image_shape
        if h != w:
            raise ValueError("the ResNet decoder needs square images")
        sizes = halvings(h)  # 28: [28, 14, 7, 4]
        self.image_shape = image_shape
        self.stem = ConvTranspose2dWN(latent_dim, widths[0], sizes[-1])
        chans = [widths[0], *widths, c]
        blocks = []
        for i in range(3):
            s_in, s_out = sizes[3 - i], sizes[2 - i]
            blocks.append(DeconvResNetBlock(chans[i], chans[i + 1], 2, s_out - (2 * s_in - 1)))
        self.blocks = nn.Sequential(*blocks)

    def logits(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits [N, C, H, W] from z [N, D] (``x`` is unused: the decoder is not
        autoregressive)."""
        h = F.elu(self.stem(z[:, :, None, None]))  # [N, 64, 4, 4]
        return self.blocks(h)  # [N, C, H, W]

    @torch.no_grad()
    def sample(self, z: torch.Tensor, greedy: bool = False,
               generator: torch.Generator | None = None,
               on_row: Callable[[int], None] | None = None) -> torch.Tensor:
        """Images [N, C, H, W] in {0, 1} from z [N, D]: pixels with p >= 0.5 (``greedy``) or
        Bernoulli draws from ``generator``. One pass: ``on_row(H)`` once at the end."""
        p = torch.sigmoid(self.logits(None, z))
        if greedy:
            x = (p >= 0.5).float()
        else:
            x = (torch.rand(p.shape, generator=generator, device=p.device) < p).float()
        if on_row is not None:
            on_row(x.shape[-2])
        return x


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
               generator: torch.Generator | None = None,
               on_row: Callable[[int], None] | None = None) -> torch.Tensor:
        """Ancestral sampling in raster order, H·W full passes: z [N, D] -> x [N, 3, H, W].
        ``on_row(1)`` is called after each image row (progress).

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
                if on_row is not None:
                    on_row(1)
        finally:
            self.train(was_training)
        return x
