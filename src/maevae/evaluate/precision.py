"""Precision and evaluation-speed helpers (the ``fp32 | bf16`` switch; DESIGN "Performance").

* :func:`autocast_context` — ``torch.autocast`` with bf16 on CPU (AMX) and CUDA (tensor
  cores); a no-op for fp32. Parameters, optimizer state and the loss stay fp32.
* :func:`autocast_dtype` — the ``autocast_dtype`` argument of
  :func:`maevae.evaluate.likelihood.importance_sampled_nll` for a precision name.
* :func:`fold_for_eval` / :func:`folded` — fold weight normalisation into plain cached
  weights for evaluation (:func:`maevae.nn.weightnorm.fold_weight_norm`): the same weights,
  computed once instead of at every forward pass.
* :func:`compile_decoder` — ``torch.compile`` of the PixelCNN core (fuses its ELUs and
  residual adds; the convolutions stay oneDNN calls).
* :func:`keep_freed_memory` — stop glibc from returning freed blocks to the OS, so that the
  large activations of a batch reuse already-mapped pages instead of page-faulting them in
  again at every op (measured: a 1×1 conv 32→64 on 512×28×28 bf16 drops from 38 ms to 11 ms).

Measured numbers are in BENCHMARKS.md (``benchmarks/throughput.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib.util
import shutil
import sys
from typing import Literal

import torch
from torch import nn

from maevae.device import autocast
from maevae.nn.weightnorm import fold_weight_norm, weight_norm_layers

Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")


def _check(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def autocast_dtype(precision: Precision) -> torch.dtype | None:
    """``None`` for fp32, ``torch.bfloat16`` for bf16."""
    _check(precision)
    return torch.bfloat16 if precision == "bf16" else None


def autocast_context(device: torch.device | str, precision: Precision):
    """Mixed-precision context: bf16 autocast on CPU or CUDA; fp32 turns autocast off
    (also inside an outer autocast). Validates its arguments, then :func:`maevae.device.autocast`.

    Inside it, convolutions and matmuls run in bf16 (CPU: AMX/AVX-512-BF16 via oneDNN;
    CUDA: tensor cores); reductions that autocast keeps in fp32 stay fp32. Use it around
    the forward pass only; ``backward`` and the optimizer step run outside.
    """
    _check(precision)
    device = torch.device(device)
    if precision == "bf16" and device.type not in ("cpu", "cuda"):
        raise ValueError(f"bf16 autocast is supported on cpu and cuda, not {device.type!r}")
    return autocast(device, precision)


def fold_for_eval(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode and fold every WN layer's weight into a cached tensor.

    The folded weights are a snapshot: call :func:`unfold` (or use :func:`folded`) before
    training again or after changing the parameters. Returns the model.
    """
    model.eval()
    fold_weight_norm(model, True)
    return model


def unfold(model: nn.Module) -> nn.Module:
    fold_weight_norm(model, False)
    return model


def is_folded(model: nn.Module) -> bool:
    layers = weight_norm_layers(model)
    return bool(layers) and all(layer._folded is not None for layer in layers)


@contextlib.contextmanager
def folded(model: nn.Module):
    """``with folded(model): ...`` — eval mode with folded weights, restored on exit."""
    was_training = model.training
    fold_for_eval(model)
    try:
        yield model
    finally:
        unfold(model)
        model.train(was_training)


def compile_decoder(model: nn.Module, **compile_kwargs) -> nn.Module:
    """``torch.compile`` the PixelCNN core of ``model.decoder`` in place (if it has one).

    Compiling takes about 0.5-2 minutes on the 2-core CPU (cached on disk by Inductor
    afterwards) and then saves ~20% of a training step and ~40-50% of an IS-likelihood
    pass (BENCHMARKS.md). Returns the model. State-dict keys do not change.
    """
    decoder = getattr(model, "decoder", model)
    core = getattr(decoder, "core", None)
    if core is not None:
        core.compile(**compile_kwargs)
    return model


def compile_unavailable(device: torch.device | str) -> str | None:
    """Why ``torch.compile`` cannot run here (no C++ compiler / no Triton), else None."""
    device = torch.device(device)
    if device.type == "cpu":
        if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
            return "no C++ compiler (g++/c++/clang++) on PATH, which Inductor needs on CPU"
    elif device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "Triton is not installed"
    elif device.type not in ("cpu", "cuda"):
        return f"not tried on {device.type!r}"
    return None


def maybe_compile_decoder(model: nn.Module, setting: str, work: int, threshold: int,
                          device: torch.device | str, warn=None) -> bool:
    """Apply a ``compile: auto | always | never`` setting; returns whether it compiled.

    ``auto`` compiles when ``work`` (planned steps, or IS samples) reaches ``threshold``,
    i.e. when the 1-2 minutes of compiling pay back. Where compiling cannot work the run
    goes on eagerly (with a warning for ``always``); errors during compilation fall back
    to eager execution too (``torch._dynamo.config.suppress_errors``).
    """
    if setting not in ("auto", "always", "never"):
        raise ValueError(f"compile must be auto, always or never, got {setting!r}")
    decoder = getattr(model, "decoder", model)
    if setting == "never" or getattr(decoder, "core", None) is None:
        return False
    if setting == "auto" and work < threshold:
        return False
    why = compile_unavailable(device)
    if why is not None:
        if setting == "always" and warn is not None:
            warn(f"compile=always but {why}; running without torch.compile")
        return False
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True
    compile_decoder(model)
    return True


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory(enabled: bool = True) -> bool:
    """Keep freed heap memory mapped (glibc only); returns whether it took effect.

    PyTorch's CPU allocator hands every tensor to malloc; glibc serves big blocks with
    ``mmap`` and unmaps them on free, so each 10-50 MB activation is page-faulted in again
    by the next op (writes cost ~3x reads here). With ``enabled`` all blocks come from the
    heap and freed memory is kept for reuse (resident memory stays at its peak: the
    process does not shrink). ``enabled=False`` restores glibc's defaults.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if enabled:
        ok = mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    else:  # glibc defaults: 65536 mmaps, 128 KiB trim threshold
        ok = mallopt(_M_MMAP_MAX, 65536) and mallopt(_M_TRIM_THRESHOLD, 128 * 1024)
    return bool(ok)
