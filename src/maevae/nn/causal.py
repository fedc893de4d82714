"""Causal convolutions that skip the masked-out taps of PixelCNN kernels (DESIGN "Performance").

A raster-order masked k×k convolution (``maevae.nn.raster.raster_mask``, c = k // 2) only
uses the rows above the centre plus the left part of the centre row (mask A without, mask
B with the centre tap); about 45-50% of a dense k×k kernel is multiplied by zeros. The
functions here compute **exactly the same function** of the input and of the (masked)
weight tensor as ``F.conv2d(x, weight * mask, bias, padding=c)`` without those multiplies:

* ``"rows"``: one convolution with the kernel's top ``c + 1`` rows on an input padded by
  ``c`` rows above (none below). The centre row's masked taps (``k - c`` or ``k - c - 1``)
  are still multiplied, so 25 of 28 taps are useful for k = 7 mask B instead of 25 of 49.
* ``"split"``: the ``c`` rows above as a ``c×k`` convolution plus the centre row's left
  part as a ``1×c`` (A) or ``1×(c+1)`` (B) convolution: no wasted taps, two conv calls.

Order "B" masks (reverse raster order, flows) use the mirrored windows (rows below, right
part of the centre row). With ``masked_channels = m`` (the decoder's first layer, where only
the image channel is masked and the z maps see the whole window) the layer is either run
densely (``first="full"``, the masked reference) or as a dense conv over channels ``m:``
plus a causal conv over channels ``:m`` (``first="split"``).

The weight may be passed unmasked: taps outside the causal window are ignored, so the
result equals the masked reference for ``weight * mask``. Gradients reach the weight only
through the taps that are used, which is exactly what the masked reference gives once the
(weight-normalised) weight is a function of ``v * mask``.

Which implementation runs is a process-wide switch, so that tests and benchmarks can
compare them::

    from maevae.nn import causal
    causal.set_impl("masked")   # the reference: dense conv with the masked weight
    causal.set_impl("causal")   # default: the decompositions above
    with causal.use_impl("masked"): ...

``configure`` selects the decomposition (``strategy``), the first-layer handling
(``first``) and whether activations are moved to channels-last memory format (which
propagates through the following 1×1 convolutions and element-wise ops).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F

from maevae.nn.raster import raster_mask

__all__ = [
    "CausalConfig",
    "IMPLS",
    "Impl",
    "STRATEGIES",
    "Strategy",
    "causal_conv2d",
    "choose_strategy",
    "no_grad_strategy",
    "configure",
    "get_config",
    "get_impl",
    "masked_conv2d",
    "set_impl",
    "use_config",
    "use_impl",
    "useful_taps",
]

Impl = Literal["masked", "causal"]
Strategy = Literal["auto", "rows", "crop", "split"]

IMPLS: tuple[str, ...] = ("masked", "causal")
STRATEGIES: tuple[str, ...] = ("auto", "rows", "crop", "split")


@dataclass(frozen=True)
class CausalConfig:
    """How masked convolutions run (process-wide): the implementation, the decomposition
    strategy of mask-A/B windows, the first layer's handling and the memory layout."""
    impl: Impl = "causal"
    strategy: Strategy = "auto"  # decomposition of mask-A/B windows; see choose_strategy
    first: Literal["full", "split"] = "full"  # layers with masked_channels < in_ch
    channels_last: bool = True  # move activations to NHWC at the masked convs


_config = CausalConfig()


def get_config() -> CausalConfig:
    """The current process-wide :class:`CausalConfig`."""
    return _config


def configure(**changes) -> CausalConfig:
    """Change fields of the process-wide :class:`CausalConfig`; returns the previous one."""
    global _config
    previous = _config
    new = replace(_config, **changes)
    if new.impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {new.impl!r}")
    if new.strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {new.strategy!r}")
    if new.first not in ("full", "split"):
        raise ValueError(f"first must be 'full' or 'split', got {new.first!r}")
    _config = new
    return previous


def set_impl(name: Impl) -> None:
    """``"masked"`` (dense reference) or ``"causal"`` (skip masked-out taps)."""
    configure(impl=name)


def get_impl() -> str:
    """The name of the current masked-convolution implementation."""
    return _config.impl


@contextlib.contextmanager
def use_config(**changes):
    """Temporarily change the configuration (``use_config(impl="masked")``)."""
    previous = configure(**changes)
    try:
        yield _config
    finally:
        configure(**previous.__dict__)


def use_impl(name: Impl):
    """Temporarily use the implementation ``name`` (a context manager)."""
    return use_config(impl=name)


# ---------------------------------------------------------------------------------------
def _half(w, c: int, mask_type: str, order: str, premasked: bool):
    """The kernel rows on the causal side, centre row included (masked unless premasked)."""
    half = w[:, :, :c + 1] if order == "A" else w[:, :, c:]
    if premasked:
        return half
    mask = _window_mask(2 * c + 1, mask_type, order, w)
    return half * (mask[:c + 1] if order == "A" else mask[c:])


def _rows(x, w, b, c: int, mask_type: str, order: str, premasked: bool = False):
    """One conv over the causal half of the kernel on an input padded on the causal side."""
    pad = (c, c, c, 0) if order == "A" else (c, c, 0, c)  # rows above (A) or below (B)
    return F.conv2d(F.pad(x, pad), _half(w, c, mask_type, order, premasked), b)


def _crop(x, w, b, c: int, mask_type: str, order: str, premasked: bool = False):
    """As ``_rows`` but with the conv's own symmetric padding, cropping the c extra rows."""
    y = F.conv2d(x, _half(w, c, mask_type, order, premasked), b, 1, c)
    return y[:, :, :x.shape[-2]] if order == "A" else y[:, :, c:]


def _split(x, w, b, c: int, mask_type: str, order: str, premasked: bool = False):
    """Rows strictly before the centre (c×k) plus the centre row's causal part."""
    h, wd = x.shape[-2:]
    keep_centre = mask_type == "B"
    if order == "A":
        out = F.conv2d(F.pad(x[:, :, :h - 1], (c, c, c, 0)), w[:, :, :c], b)
        if keep_centre:  # columns j-c..j
            centre = F.conv2d(F.pad(x, (c, 0, 0, 0)), w[:, :, c:c + 1, :c + 1])
        else:  # columns j-c..j-1
            centre = F.conv2d(F.pad(x[..., :wd - 1], (c, 0, 0, 0)), w[:, :, c:c + 1, :c])
    else:
        out = F.conv2d(F.pad(x[:, :, 1:], (c, c, 0, c)), w[:, :, c + 1:], b)
        if keep_centre:  # columns j..j+c
            centre = F.conv2d(F.pad(x, (0, c, 0, 0)), w[:, :, c:c + 1, c:])
        else:  # columns j+1..j+c
            centre = F.conv2d(F.pad(x[..., 1:], (0, c, 0, 0)), w[:, :, c:c + 1, c + 1:])
    return out + centre


def causal_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  mask_type: Literal["A", "B"], masked_channels: int | None = None,
                  order: Literal["A", "B"] = "A", strategy: Strategy | None = None,
                  first: Literal["full", "split"] | None = None,
                  premasked: bool = False) -> torch.Tensor:
    """``F.conv2d(x, weight * mask, bias, padding=k // 2)`` without the masked-out taps.

    x: [N, in, H, W]; weight: [out, in, k, k] (odd k >= 3); the mask is
    ``conv_mask(out, in, k, mask_type, masked_channels, order)``. Returns [N, out, H, W].
    ``strategy`` (default: the configured one) is "auto", "rows", "crop", "split" or
    "masked" (dense). ``premasked=True`` promises that the weight is already zero outside
    the mask, which saves re-masking it.
    """
    k = weight.shape[-1]
    if weight.shape[-2] != k or k % 2 == 0 or k < 3:
        raise ValueError(f"causal_conv2d needs an odd square kernel >= 3, "
                         f"got {tuple(weight.shape)}")
    c = k // 2
    strategy = strategy or _config.strategy
    if strategy == "auto":
        strategy = choose_strategy(x, weight)
    in_ch = weight.shape[1]
    m = in_ch if masked_channels is None else masked_channels
    if strategy == "masked" or (m < in_ch and (first or _config.first) == "full"):
        # dense over all channels with the masked weight (the reference computation)
        w = weight
        if not premasked:
            mask = _window_mask(k, mask_type, order, weight)
            w = weight * mask if m >= in_ch else torch.cat([weight[:, :m] * mask, weight[:, m:]], 1)
        return F.conv2d(x, w, bias, 1, c)
    op = {"rows": _rows, "crop": _crop, "split": _split}[strategy]
    if m >= in_ch:
        return op(x, weight, bias, c, mask_type, order, premasked)
    full = F.conv2d(x[:, m:], weight[:, m:], bias, 1, c)
    return full + op(x[:, :m], weight[:, :m], None, c, mask_type, order, premasked)


_MASKS: dict[tuple, torch.Tensor] = {}


def _window_mask(k: int, mask_type: str, order: str, like: torch.Tensor) -> torch.Tensor:
    """The k×k raster mask (cached per dtype and device)."""
    key = (k, mask_type, order, like.dtype, like.device)
    if key not in _MASKS:
        _MASKS[key] = raster_mask(k, mask_type, order, like.dtype, like.device)
    return _MASKS[key]


# The CPU's vector ISA as PyTorch dispatches it ("AVX512", "AVX2", "DEFAULT", ...), read once.
_CPU_CAPABILITY: str = torch.backends.cpu.get_cpu_capability()
# Whether the CPU has AMX tiles (Intel Xeon from Sapphire Rapids on), read once.
_AMX: bool = bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def _bf16(x: torch.Tensor) -> bool:
    """Whether a CPU convolution of ``x`` runs in bf16 (a bf16 tensor, or a bf16 autocast)."""
    return x.dtype == torch.bfloat16 or (torch.is_autocast_enabled("cpu")
                                         and torch.get_autocast_dtype("cpu") == torch.bfloat16)


def no_grad_strategy(x: torch.Tensor, weight: torch.Tensor) -> str:
    """:func:`choose_strategy`'s answer where no gradient is needed (evaluation, sampling).

    crop: no input copy, one conv call, but 11% more output rows at k = 7. On AVX2-only CPUs
    the 7×7 kernel's extra rows cost more than rows' input pad (16% per layer). Traced by
    ``torch.compile`` in bf16 on a CPU with AMX, rows at every k: Inductor writes the pad
    in the kernel before (the ELU), and oneDNN's AMX convolutions run faster on the padded
    input without a padding of their own (the compiled core 8-11% faster, the IS pass 4-5%).
    """
    if x.device.type != "cpu":
        return "crop"
    if _CPU_CAPABILITY == "AVX2" and weight.shape[-1] >= 7:
        return "rows"
    if _AMX and _bf16(x) and torch.compiler.is_compiling():
        return "rows"
    return "crop"


def choose_strategy(x: torch.Tensor, weight: torch.Tensor) -> str:
    """The decomposition measured fastest on this project's CPUs (see BENCHMARKS.md).

    Returns ``"masked"`` where the dense reference is as fast (bf16 training of 3×3
    kernels: the extra pad/slice costs more than the multiplies it saves).
    """
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if not needs_grad:
        return no_grad_strategy(x, weight)
    if x.device.type != "cpu":
        return "rows"
    if weight.shape[-1] <= 3:  # crop's backward is slow in bf16 (oneDNN), fine in fp32
        return "masked" if _bf16(x) else "crop"
    return "rows"


def masked_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  mask_type: Literal["A", "B"], masked_channels: int | None = None,
                  order: Literal["A", "B"] = "A") -> torch.Tensor:
    """Dispatch on the process-wide switch: the masked reference or :func:`causal_conv2d`.

    ``weight`` must already be masked (the reference multiplies every tap).
    """
    cfg = _config
    if cfg.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    k = weight.shape[-1]
    if cfg.impl == "masked" or k < 3 or weight.shape[-2] != k:
        return F.conv2d(x, weight, bias, 1, k // 2)
    return causal_conv2d(x, weight, bias, mask_type, masked_channels, order, cfg.strategy,
                         premasked=True)


def useful_taps(k: int, mask_type: str) -> int:
    """Number of taps of a k×k raster mask that are not masked out."""
    c = k // 2
    return c * k + c + (mask_type == "B")
