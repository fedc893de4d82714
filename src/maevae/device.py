"""The one place where the compute device and how it computes are chosen.

* :func:`resolve_device` — ``auto | cpu | cuda | cuda:N``;
* :func:`autocast` / :func:`autocast_context` / :func:`full_precision` — the ``fp32 | bf16``
  switch: ``torch.autocast`` with bf16 on CPU (AMX) and CUDA (tensor cores); parameters,
  optimizer state and the loss stay fp32;
* :func:`slow_bf16` / :func:`note_slow_bf16` — whether bf16 has native kernels on the device
  (without them bf16 runs many times slower than fp32: one warning line says so);
* :func:`maybe_compile_decoder` — the ``compile: auto | always | never`` policy
  (``torch.compile`` of the PixelCNN core: fuses its ELUs and residual adds; the
  convolutions stay oneDNN calls);
* :func:`keep_freed_memory` — the allocator switch: stop glibc from returning freed blocks
  to the OS, so that the large activations of a batch reuse already-mapped pages instead
  of page-faulting them in again at every op (measured: a 1×1 conv 32→64 on 512×28×28 bf16
  drops from 38 ms to 11 ms).

Measured numbers are in BENCHMARKS.md (``benchmarks/throughput.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib.util
import os
import shutil
import sys
from typing import Literal

import torch
from torch import nn

from maevae.compile_backend import INDUCTOR
from maevae.errors import ConfigError, MaevaeError

__all__ = [
    "PRECISIONS",
    "Precision",
    "at_least_fp32",
    "autocast",
    "autocast_context",
    "autocast_dtype",
    "autocast_to",
    "compile_decoder",
    "compile_unavailable",
    "full_precision",
    "MALLOC_ENV",
    "MALLOC_POLICIES",
    "MMAP_ABOVE",
    "keep_freed_memory",
    "malloc_policy_from_env",
    "maybe_compile_decoder",
    "note_slow_bf16",
    "resolve_device",
    "set_malloc_policy",
    "slow_bf16",
]

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


def _cpu_has_native_bf16() -> bool:
    """oneDNN's own probe: bf16 kernels need AVX-512 (BW/VL/DQ) or AMX."""
    try:
        return torch.backends.mkldnn.is_available() and \
            bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the probe: assume native
        return True


def slow_bf16(device: torch.device | str) -> str | None:
    """Why bf16 autocast would run *slower* than fp32 on ``device``, or None where it has
    native bf16 kernels.

    On a CPU without AVX-512 (AVX2 only) oneDNN has no bf16 convolution or matmul, and
    PyTorch falls back to reference loops: measured on an AVX2-only AMD EPYC, a bf16 1×1
    convolution runs 15× slower than in fp32, a bf16 matmul 15-20×, and the paper's model
    (whose prior and output head stay fp32) trains 8.5× and evaluates 6.3× slower
    (BENCHMARKS.md).
    A CUDA GPU before Ampere (compute capability < 8.0) emulates bf16.
    """
    device = torch.device(device)
    if device.type == "cpu":
        if _cpu_has_native_bf16():
            return None
        return (f"this CPU ({torch.backends.cpu.get_cpu_capability()}) has no native bf16 "
                "kernels (oneDNN's need AVX-512 or AMX), so bf16 runs 6-9x slower than fp32")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        major, minor = torch.cuda.get_device_capability(device)
        return (f"this GPU ({torch.cuda.get_device_name(device)}, compute capability "
                f"{major}.{minor}) has no native bf16 (it needs 8.0 or later)")
    return None


def note_slow_bf16(precision: str, device: torch.device | str, setting: str, fix: str,
                   warn) -> bool:
    """One ``warn`` line when ``precision`` is bf16 and :func:`slow_bf16` gives a reason;
    returns whether it warned. ``setting`` names the config key, ``fix`` the way out."""
    why = slow_bf16(device) if precision == "bf16" else None
    if why is not None:
        warn(f"{setting}=bf16 but {why}; {fix}")
    return why is not None


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU is a clear error."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was requested but no CUDA GPU is available to "
                              "torch here; use --device cpu or auto")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"unknown device {name!r}; allowed: auto, cpu, cuda, cuda:N")


def autocast(device: torch.device, precision: str):
    """bf16 autocast (AMX on CPU, tensor cores on GPU) or a disabled context for fp32."""
    return autocast_to(device, torch.bfloat16 if precision == "bf16" else None)


def autocast_to(device: torch.device | str, dtype: torch.dtype | None):
    """Autocast to ``dtype``; ``None`` is fp32 (autocast off, also inside an outer one)."""
    if dtype is None:
        return full_precision(device)
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def full_precision(device: torch.device | str):
    """A region that runs in fp32 even inside a bf16 autocast (cast inputs with at_least_fp32).

    Outside an autocast it is a no-op context, so that a graph traced in fp32 holds no
    autocast region (which makes AOTAutograd bypass its cache: seconds per process).
    """
    kind = torch.device(device).type
    try:
        if not torch.is_autocast_enabled(kind):
            return contextlib.nullcontext()
    except RuntimeError:  # a device type without autocast (meta): as before
        pass
    return torch.autocast(device_type=kind, enabled=False)


def at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """bf16 / fp16 -> fp32; fp32 and fp64 unchanged."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def compile_decoder(model: nn.Module, **compile_kwargs) -> nn.Module:
    """``torch.compile`` the PixelCNN core of ``model.decoder`` in place (if it has one).

    Compiling takes about 0.5-2 minutes on the 2-core CPU (cached on disk by Inductor
    afterwards) and then saves ~20% of a training step and ~40-50% of an IS-likelihood
    pass (BENCHMARKS.md). The backend is :data:`maevae.compile_backend.INDUCTOR` (Inductor,
    with a cheaper exp in bf16 CPU graphs) unless ``compile_kwargs`` name a backend or
    Inductor options. The binary PixelCNN decoder runs its output head inside the core's
    forward (``PixelCNNDecoder.head_in_core``), so the head compiles into the core's graph.
    Returns the model. State-dict keys do not change.
    """
    decoder = getattr(model, "decoder", model)
    core = getattr(decoder, "core", None)
    if core is not None:
        if "backend" not in compile_kwargs and "options" not in compile_kwargs:
            compile_kwargs = {**compile_kwargs, "backend": INDUCTOR}
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
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4

MMAP_ABOVE = 32 * 2**20  # glibc's largest fixed mmap threshold on 64-bit (32 MiB)
MALLOC_POLICIES = ("bounded", "heap", "glibc")
MALLOC_ENV = "MAEVAE_MALLOC"


def _mallopt():
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def set_malloc_policy(policy: str = "bounded") -> bool:
    """How glibc's malloc keeps freed memory (glibc only); returns whether it took effect.

    PyTorch's CPU allocator hands every tensor to malloc. glibc's defaults serve blocks above
    a (dynamic) threshold with ``mmap`` and unmap them on free, so each 10-50 MB activation
    is page-faulted in again by the next op (writes cost ~3x reads here). The policies:

    * ``"bounded"`` (maevae's default): blocks up to :data:`MMAP_ABOVE` (32 MiB: a training
      batch's and an IS chunk's activations) come from the heap, and freed heap memory is
      kept for reuse; larger blocks (the data-dependent init on 500 images, one-off
      buffers) are mmapped and returned on free, so they do not stay resident;
    * ``"heap"``: every block comes from the heap and nothing is returned (resident memory
      stays at the process's peak, fragmentation included): maevae's policy until
      2026-12-02, kept for comparison (``benchmarks/allocator.py``, ``memory.py``);
    * ``"glibc"``: glibc's defaults (65536 mmaps, dynamic threshold, 128 KiB trim threshold).
    """
    if policy not in MALLOC_POLICIES:
        raise MaevaeError(f"{MALLOC_ENV}={policy!r}: choose one of {', '.join(MALLOC_POLICIES)}")
    mallopt = _mallopt()
    if mallopt is None:
        return False
    if policy == "bounded":
        ok = (mallopt(_M_MMAP_MAX, 65536) and mallopt(_M_MMAP_THRESHOLD, MMAP_ABOVE)
              and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    elif policy == "heap":
        ok = mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    else:  # glibc's defaults; setting the mmap threshold back to 128 KiB fixes it there
        ok = (mallopt(_M_MMAP_MAX, 65536) and mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
              and mallopt(_M_TRIM_THRESHOLD, 128 * 1024))
    return bool(ok)


def malloc_policy_from_env() -> str:
    """The allocator policy of a command: ``$MAEVAE_MALLOC`` (stripped, lower case) or
    ``"bounded"``."""
    return os.environ.get(MALLOC_ENV, "bounded").strip().lower() or "bounded"


def keep_freed_memory(enabled: bool = True) -> bool:
    """``set_malloc_policy("bounded")`` when ``enabled``, else glibc's defaults."""
    return set_malloc_policy("bounded" if enabled else "glibc")
