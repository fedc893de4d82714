"""Binarisation of 8-bit grey images (SPEC §3.1 "Binarisation", §4.1).

A pixel with intensity p = x / 255 becomes 1 iff u < p with u ~ U[0, 1), so P(1) = p exactly
(p = 0 never fires, p = 1 always fires).

* training: :func:`dynamic_binarize`, redrawn for every minibatch (torch);
* validation / test in the authors' code: :func:`fixed_binarized_copies`, 5 fixed copies drawn
  once from a seed;
* reconstructions / visualisation: :func:`threshold` at 0.5.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["dynamic_binarize", "fixed_binarized_copies", "threshold"]


def _intensity(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if x.is_floating_point():
        return x.float()
    raise TypeError(f"expected a uint8 (0..255) or float (0..1) tensor, got {x.dtype}")


def dynamic_binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Return a float tensor of 0/1 with ``1 iff u < x/255``, ``u ~ U[0,1)`` drawn afresh.

    ``x`` is uint8 (0..255) or an intensity in [0, 1] as float. ``generator`` (on ``x``'s
    device) makes the draw reproducible.
    """
    p = _intensity(x)
    u = torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype)
    return (u < p).to(p.dtype)


def fixed_binarized_copies(x_uint8: np.ndarray, n_copies: int, seed: int) -> np.ndarray:
    """``n_copies`` independent binarisations of ``x_uint8`` [N, ...], reproducible from ``seed``.

    Returns uint8 {0, 1} of shape [n_copies * N, ...] in copy-major order: rows
    ``c*N:(c+1)*N`` are copy ``c`` of all N images, in the input order.
    """
    x = np.asarray(x_uint8)
    if x.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got {x.dtype}")
    if n_copies < 1:
        raise ValueError(f"n_copies must be >= 1, got {n_copies}")
    rng = np.random.default_rng(seed)
    # Compare in integer-free float64: u < x/255  <=>  255*u < x (exact for float64 u).
    xf = x.astype(np.float64)
    out = np.empty((n_copies,) + x.shape, dtype=np.uint8)
    for c in range(n_copies):
        u = rng.random(x.shape)
        np.less(u * 255.0, xf, out=out[c], casting="unsafe")
    return out.reshape((n_copies * x.shape[0],) + x.shape[1:])


def threshold(x_uint8, level: float = 0.5):
    """Deterministic binarisation: 1 iff x/255 > ``level``.

    numpy input -> uint8 {0,1}; torch input -> float tensor {0., 1.}.
    """
    if isinstance(x_uint8, torch.Tensor):
        return (_intensity(x_uint8) > level).float()
    x = np.asarray(x_uint8)
    p = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    return (p > level).astype(np.uint8)
