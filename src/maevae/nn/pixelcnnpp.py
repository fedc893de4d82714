"""PixelCNN++ (Salimans et al. 2017) as in the authors' CIFAR-10 decoder (SPEC §1.7).

Two streams keep the network causal without masks:

* the u-stream ("up") sees only rows strictly above the current pixel: convolutions
  shifted down (kernel 2×3, padded 1 row on top and 1 column each side);
* the ul-stream ("up-left") sees rows above and the pixels to the left in the current
  row: convolutions shifted down and right (kernel 2×2, padded 1 row on top, 1 column on
  the left).

TopShift (first layer, image only, no constant ones-channel, SPEC §6 row 24)::

    u  = down_shift(DownShiftConv_{2x3}(x))
    ul = down_shift(DownShiftConv_{1x3}(x)) + right_shift(DownRightShiftConv_{2x1}(x))

Gated residual block (act = concat_elu, C channels, h the conditioning map)::

    hc  = Conv3x3_{2C->2C}(act(Conv3x3_{2h->C}(act(h))))          shared by both streams
    c1  = dropout(act(Conv_{2C->C}(act(Conv_{2C->C}(act(u))))))   2×3 down-shifted convs
    u'  = a * sigmoid(b) + u,      (a, b) = split(Conv_{2C->2C}(c1) + hc)
    aux = NIN_{2C->C}(act(u'))
    c2  = dropout(act(Conv_{2C->C}(act(Conv_{2C->C}(act(ul)))) + aux))  2×2 down-right
    ul' = a * sigmoid(b) + ul,     (a, b) = split(Conv_{2C->2C}(c2) + hc)

The gate-producing convs and the second h conv use DDI scale 0.1 (SPEC §1.0 item 4).

Network (``levels`` resolutions, ``num_resnets`` blocks per level and pass)::

    up:    TopShift; level 0: R blocks; level l > 0: stride-2 shifted convs (h: WN 3×3
           stride-2 conv doubling its channels), then R blocks.
           Every block output and every downsampling output is pushed (2 + 6 + 6 + 6 = 20).
    down:  level L-1 … 0: R blocks, then (not at the last level) stride-2 shifted
           transposed convs (h: WN transposed 3×3 stride-2 conv halving its channels).
           Before each down layer pop the stack; the first layer starts from the popped
           pair, every later one adds NIN(act(popped)) to each stream.
    out:   the ul-stream.

Parameter count note: the authors build one NIN pair per down layer (20 pairs) but never
use the first pair. ``unused_first_nin=True`` keeps that pair (frozen:
``requires_grad=False``, never called) so the count equals theirs (2 × 18,624 parameters
at 96 channels); it has no effect on the function computed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maevae.nn.weightnorm import Conv2dWN, ConvTranspose2dWN, _WeightNormBase

__all__ = [
    "DownRightShiftConv2d",
    "DownRightShiftConvTranspose2d",
    "DownShiftConv2d",
    "DownShiftConvTranspose2d",
    "Downsample",
    "GatedResnet",
    "NIN",
    "PixelCNNpp",
    "TopShift",
    "Upsample",
    "concat_elu",
    "down_shift",
    "right_shift",
]


def concat_elu(x: torch.Tensor) -> torch.Tensor:
    """ELU of [x, -x] along channels: [N, C, H, W] -> [N, 2C, H, W]."""
    return F.elu(torch.cat([x, -x], dim=1))


def down_shift(x: torch.Tensor) -> torch.Tensor:
    """Move every row one down (zeros in row 0)."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def right_shift(x: torch.Tensor) -> torch.Tensor:
    """Move every column one right (zeros in column 0)."""
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


class DownShiftConv2d(Conv2dWN):
    """WN conv seeing only the rows above and the current row centred: pad (kw-1)/2 left and
    right, kh-1 on top, then a valid conv (optionally stride 2)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: tuple[int, int], stride: int = 1,
                 init_scale: float = 1.0):
        super().__init__(in_ch, out_ch, kernel_size, stride=stride, init_scale=init_scale)
        kh, kw = kernel_size
        self.shift_padding = ((kw - 1) // 2, (kw - 1) // 2, kh - 1, 0)

    def _op(self, x, w, b):
        return F.conv2d(F.pad(x, self.shift_padding), w, b, self.stride)


class DownRightShiftConv2d(DownShiftConv2d):
    """WN conv seeing rows above and columns to the left: pad kw-1 left, kh-1 on top."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: tuple[int, int], stride: int = 1,
                 init_scale: float = 1.0):
        super().__init__(in_ch, out_ch, kernel_size, stride=stride, init_scale=init_scale)
        kh, kw = kernel_size
        self.shift_padding = (kw - 1, 0, kh - 1, 0)


class DownShiftConvTranspose2d(_WeightNormBase):
    """WN transposed conv (stride s, output padding s-1) cropped back to causal alignment:
    drop kh-1 rows at the bottom and (kw-1)/2 columns on each side; [N, C, H, W] ->
    [N, C', sH, sW]. The norm is per output channel (dim 1 of v)."""

    _out_dim = 1

    def __init__(self, in_ch: int, out_ch: int, kernel_size: tuple[int, int], stride: int = 2,
                 init_scale: float = 1.0):
        super().__init__()
        kh, kw = kernel_size
        self.stride = stride
        self.crop = (kh - 1, (kw - 1) // 2, (kw - 1) // 2)  # bottom, left, right
        self._init_params((in_ch, out_ch, kh, kw), out_ch, init_scale)

    def _op(self, x, w, b):
        out = F.conv_transpose2d(x, w, b, self.stride, 0, self.stride - 1)
        bottom, left, right = self.crop
        return out[:, :, :out.shape[2] - bottom, left:out.shape[3] - right]


class DownRightShiftConvTranspose2d(DownShiftConvTranspose2d):
    """As :class:`DownShiftConvTranspose2d`, cropping kw-1 columns on the right only."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: tuple[int, int], stride: int = 2,
                 init_scale: float = 1.0):
        super().__init__(in_ch, out_ch, kernel_size, stride, init_scale)
        kh, kw = kernel_size
        self.crop = (kh - 1, 0, kw - 1)


class GatedResnet(nn.Module):
    """Gated residual block on both streams, conditioned on h [N, h_ch, H, W] (see module doc)."""

    def __init__(self, channels: int, h_channels: int = 0, dropout: float = 0.0):
        super().__init__()
        c = channels
        self.u_conv1 = DownShiftConv2d(2 * c, c, (2, 3))
        self.u_conv2 = DownShiftConv2d(2 * c, c, (2, 3))
        self.u_gate = DownShiftConv2d(2 * c, 2 * c, (2, 3), init_scale=0.1)
        self.ul_conv1 = DownRightShiftConv2d(2 * c, c, (2, 2))
        self.ul_conv2 = DownRightShiftConv2d(2 * c, c, (2, 2))
        self.nin = Conv2dWN(2 * c, c, 1)
        self.ul_gate = DownRightShiftConv2d(2 * c, 2 * c, (2, 2), init_scale=0.1)
        if h_channels:
            self.h_conv1 = Conv2dWN(2 * h_channels, c, 3, padding=1)
            self.h_conv2 = Conv2dWN(2 * c, 2 * c, 3, padding=1, init_scale=0.1)
        else:
            self.h_conv1 = self.h_conv2 = None
        self.dropout = nn.Dropout(dropout)

    def forward(self, u: torch.Tensor, ul: torch.Tensor, h: torch.Tensor | None = None):
        """One gated residual step of the two streams: ``(u, ul)`` [N, C, H, W] each,
        conditioned on ``h`` when given; returns the new ``(u, ul)``."""
        hc = 0.0
        if self.h_conv1 is not None:
            hc = self.h_conv2(concat_elu(self.h_conv1(concat_elu(h))))  # [N, 2C, H, W]
        c1 = concat_elu(self.u_conv1(concat_elu(u)))
        c1 = self.dropout(concat_elu(self.u_conv2(c1)))
        a, b = (self.u_gate(c1) + hc).chunk(2, dim=1)
        u = a * torch.sigmoid(b) + u

        aux = self.nin(concat_elu(u))
        c2 = concat_elu(self.ul_conv1(concat_elu(ul)))
        c2 = self.dropout(concat_elu(self.ul_conv2(c2) + aux))
        a, b = (self.ul_gate(c2) + hc).chunk(2, dim=1)
        ul = a * torch.sigmoid(b) + ul
        return u, ul


class TopShift(nn.Module):
    """First layer: image [N, in, H, W] -> (u, ul) [N, C, H, W] each, strictly causal."""

    def __init__(self, in_ch: int, channels: int):
        super().__init__()
        self.u_conv = DownShiftConv2d(in_ch, channels, (2, 3))
        self.ul_conv_up = DownShiftConv2d(in_ch, channels, (1, 3))
        self.ul_conv_left = DownRightShiftConv2d(in_ch, channels, (2, 1))

    def forward(self, x: torch.Tensor):
        """The first down- and down-right-shifted streams ``(u, ul)`` of images x."""
        u = down_shift(self.u_conv(x))
        ul = down_shift(self.ul_conv_up(x)) + right_shift(self.ul_conv_left(x))
        return u, ul


class Downsample(nn.Module):
    """Stride-2 shifted convs on both streams: [N, C, H, W] -> [N, C, H/2, W/2]."""

    def __init__(self, channels: int):
        super().__init__()
        self.u_conv = DownShiftConv2d(channels, channels, (2, 3), stride=2)
        self.ul_conv = DownRightShiftConv2d(channels, channels, (2, 2), stride=2)

    def forward(self, u, ul, h=None):
        """Halve the height and width of both streams ``(u, ul)`` (``h`` is unused)."""
        return self.u_conv(u), self.ul_conv(ul)


class Upsample(nn.Module):
    """Stride-2 shifted transposed convs: [N, C, H, W] -> [N, C, 2H, 2W]."""

    def __init__(self, channels: int):
        super().__init__()
        self.u_deconv = DownShiftConvTranspose2d(channels, channels, (2, 3))
        self.ul_deconv = DownRightShiftConvTranspose2d(channels, channels, (2, 2))

    def forward(self, u, ul, h=None):
        """Double the height and width of both streams ``(u, ul)`` (``h`` is unused)."""
        return self.u_deconv(u), self.ul_deconv(ul)


class NIN(nn.Module):
    """``x + Conv1x1_{2C->C}(concat_elu(skip))``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = Conv2dWN(2 * channels, channels, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """x + a 1×1 convolution of concat_elu(``skip``): the skip connection into x."""
        return x + self.conv(concat_elu(skip))


class PixelCNNpp(nn.Module):
    """x [N, in_ch, H, W] (+ h [N, h_ch, H, W]) -> ul-stream features [N, channels, H, W].

    H and W must be divisible by 2**(levels-1). Output at pixel (r, c) depends on the
    input at pixels strictly before (r, c) in raster order (all channels) and on h.
    """

    def __init__(self, in_ch: int = 3, channels: int = 96, levels: int = 3,
                 num_resnets: int = 6, h_channels: int = 0, dropout: float = 0.0,
                 unused_first_nin: bool = True):
        super().__init__()
        self.levels = levels
        self.top = TopShift(in_ch, channels)
        up, up_h = [], []
        hc = h_channels
        for level in range(levels):
            if level > 0:
                up.append(Downsample(channels))
                up_h.append(Conv2dWN(hc, 2 * hc, 3, stride=2, padding=1) if hc else None)
                hc *= 2
            for _ in range(num_resnets):
                up.append(GatedResnet(channels, hc, dropout))
                up_h.append(None)
        down, down_h = [], []
        for level in range(levels):
            for _ in range(num_resnets):
                down.append(GatedResnet(channels, hc, dropout))
                down_h.append(None)
            if level < levels - 1:
                down.append(Upsample(channels))
                down_h.append(ConvTranspose2dWN(hc, hc // 2, 3, stride=2, padding=1,
                                                output_padding=1) if hc else None)
                hc //= 2
        self.up_layers = nn.ModuleList(up)
        self.down_layers = nn.ModuleList(down)
        self.up_h = nn.ModuleList(m if m is not None else nn.Identity() for m in up_h)
        self.down_h = nn.ModuleList(m if m is not None else nn.Identity() for m in down_h)
        n_nin = len(down) - 1
        self.nin_u = nn.ModuleList(NIN(channels) for _ in range(n_nin))
        self.nin_ul = nn.ModuleList(NIN(channels) for _ in range(n_nin))
        if unused_first_nin:  # the authors' never-called first pair (parameter count only)
            self.unused_nin = nn.ModuleList([NIN(channels), NIN(channels)])
            self.unused_nin.requires_grad_(False)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """Images x [N, 3, H, W] in [-1, 1] (conditioned on the maps ``h``) -> the logistic
        mixture parameters [N, 10·nmix, H, W]."""
        u, ul = self.top(x)
        stack = []
        for layer, h_map in zip(self.up_layers, self.up_h):
            u, ul = layer(u, ul, h)
            h = h_map(h) if h is not None else None
            stack.append((u, ul))
        for i, (layer, h_map) in enumerate(zip(self.down_layers, self.down_h)):
            su, sul = stack.pop()
            if i == 0:
                u, ul = su, sul
            else:
                u, ul = self.nin_u[i - 1](u, su), self.nin_ul[i - 1](ul, sul)
            u, ul = layer(u, ul, h)
            h = h_map(h) if h is not None else None
        assert not stack
        return ul
