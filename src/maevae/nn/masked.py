"""Masked (autoregressive) layers: PixelCNN convolutions and MADE linears (SPEC §1.0, §1.2, §1.4).

Masked layers are weight-normalised by hand: ``w = exp(g_log) * (mask*v) / ||mask*v||``.
The mask is a buffer, re-applied at every forward pass, so masked-out weights never act.

The k×k kernels use the raster-order masks A and B of :func:`maevae.nn.raster.raster_mask`
(its docstring draws them). ``masked_channels`` limits the mask to the first input channels
(the decoder's first layer masks only the image channel; the z feature maps see the whole
window). ``order="B"`` flips the mask in both axes (reverse raster order, used by flows).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from maevae.nn import causal
from maevae.nn.raster import raster_mask
from maevae.nn.weightnorm import _WeightNormBase

__all__ = ["MaskedConv2d", "MaskedLinear", "conv_mask"]


def conv_mask(out_ch: int, in_ch: int, k: int, mask_type: Literal["A", "B"],
              masked_channels: int | None = None, order: Literal["A", "B"] = "A") -> torch.Tensor:
    """Float mask [out_ch, in_ch, k, k] for a raster-order causal convolution."""
    m2d = raster_mask(k, mask_type, order)  # [k, k]
    mask = torch.ones(out_ch, in_ch, k, k)
    n = in_ch if masked_channels is None else masked_channels
    mask[:, :n] = m2d
    return mask


class MaskedConv2d(_WeightNormBase):
    """Weight-normalised masked convolution, 'same' padding; [B, in, H, W] -> [B, out, H, W]."""

    log_gain = True

    def __init__(self, in_ch: int, out_ch: int, k: int, mask_type: Literal["A", "B"],
                 masked_channels: int | None = None, order: Literal["A", "B"] = "A",
                 init_scale: float = 1.0):
        super().__init__()
        self.in_ch, self.out_ch, self.k = in_ch, out_ch, k
        self.mask_type, self.masked_channels, self.order = mask_type, masked_channels, order
        self.register_buffer("mask", conv_mask(out_ch, in_ch, k, mask_type, masked_channels, order),
                             persistent=False)
        self._init_params((out_ch, in_ch, k, k), out_ch, init_scale)
        with torch.no_grad():  # v starts masked; the gain matches the masked norm
            self.v.mul_(self.mask)
            self.g.copy_(self._v_norm(self.v).log())

    def _op(self, x, w, b):
        # the masked reference or the causal decomposition (maevae.nn.causal.set_impl):
        # the same function of x and of the masked weight, without the masked-out taps
        return causal.masked_conv2d(x, w, b, self.mask_type, self.masked_channels, self.order)

    def forward_shared(self, image: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
        """The layer on ``cat([image repeated S times, rest])`` without repeating ``image``.

        image: [B, m, H, W], the masked channels (m = ``masked_channels``), the same for
        all S samples; rest: [S*B, in - m, H, W], the unmasked channels, sample-major
        (row ``s*B + b`` belongs to image b). Returns [S*B, out, H, W], equal to
        ``self(torch.cat([image.repeat(S, 1, 1, 1), rest], 1))``: by linearity the masked
        part of the convolution is computed once per image and broadcast over the samples.
        """
        m = self.masked_channels
        if m is None or m >= self.in_ch:
            raise ValueError("forward_shared needs a layer with unmasked channels")
        b, n = image.shape[0], rest.shape[0]
        if n % b:
            raise ValueError(f"rest has {n} rows, not a multiple of the {b} images")
        w = self.weight()
        c = self.k // 2
        cfg = causal.get_config()
        if cfg.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
            rest = rest.contiguous(memory_format=torch.channels_last)
        out = F.conv2d(rest, w[:, m:], self.bias, 1, c)  # [S*B, out, H, W]
        if cfg.impl == "masked":
            own = F.conv2d(image, w[:, :m], None, 1, c)  # [B, out, H, W]
        else:
            own = causal.causal_conv2d(image, w[:, :m], None, self.mask_type, None,
                                       self.order, cfg.strategy, premasked=True)
        out.view(n // b, b, *out.shape[1:]).add_(own.unsqueeze(0))  # broadcast over samples
        if self._ddi_pending:
            out = self._ddi(out)
        return out


class MaskedLinear(_WeightNormBase):
    """Weight-normalised linear layer with a fixed connectivity mask [out, in]."""

    log_gain = True
    _unit_axis = -1
    _zero_std_fix = True

    def __init__(self, mask: torch.Tensor, init_scale: float = 1.0):
        super().__init__()
        out_features, in_features = mask.shape
        self.register_buffer("mask", mask.float().clone(), persistent=False)
        self._init_params((out_features, in_features), out_features, init_scale)
        with torch.no_grad():
            self.v.mul_(self.mask)
            self.g.copy_(self._v_norm(self.v).log())

    def _op(self, x, w, b):
        return F.linear(x, w, b)
