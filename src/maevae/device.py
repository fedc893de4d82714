"""The one place where the compute device is chosen."""

from __future__ import annotations

import torch

from maevae.errors import ConfigError


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
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return full_precision(device)


def full_precision(device: torch.device | str):
    """A region that runs in fp32 even inside a bf16 autocast (cast inputs with at_least_fp32)."""
    return torch.autocast(device_type=torch.device(device).type, enabled=False)


def at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """bf16 / fp16 -> fp32; fp32 and fp64 unchanged."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t
