"""MADE (Germain et al. 2015) with one hidden layer and a direct connection (SPEC §1.4).

Degrees (0-based unit indices), for input size D and hidden size H:

* input j has degree j + 1;
* hidden h has degree ceil((h + 1) (D - 1) / H), in 1 … D-1;
* output i has degree i.

A connection exists when the receiving degree is >= the sending degree, so output i
depends exactly on inputs 0 … i-1 (a strictly lower-triangular Jacobian). ``order="B"``
reverses both axes of every mask, so output i depends on inputs i+1 … D-1.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from maevae.nn.masked import MaskedLinear

__all__ = ["MADE", "made_masks"]


def made_masks(d: int, h: int, order: Literal["A", "B"] = "A"):
    """Masks (in->hidden [H, D], hidden->out [D, H], in->out direct [D, D])."""
    deg_in = torch.arange(d) + 1
    deg_hid = -(-torch.arange(1, h + 1) * (d - 1) // h)  # ceil(k (d-1) / h), k = 1..h
    deg_out = torch.arange(d)
    m_in = (deg_hid[:, None] >= deg_in[None, :]).float()
    m_out = (deg_out[:, None] >= deg_hid[None, :]).float()
    m_direct = (deg_out[:, None] >= deg_in[None, :]).float()
    if order == "B":
        m_in, m_out, m_direct = (m.flip(0).flip(1) for m in (m_in, m_out, m_direct))
    return m_in, m_out, m_direct


class MADE(nn.Module):
    """``out(ReLU(in(x))) + direct(x)``; x: [..., D] -> [..., D]."""

    def __init__(self, d: int, hidden: int, order: Literal["A", "B"] = "A",
                 init_scale: float = 1.0):
        super().__init__()
        m_in, m_out, m_direct = made_masks(d, hidden, order)
        self.inp = MaskedLinear(m_in, init_scale)
        self.out = MaskedLinear(m_out, init_scale)
        self.direct = MaskedLinear(m_direct, init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., D] -> [..., D], output d depending only on the inputs before d in the
        ordering."""
        return self.out(F.relu(self.inp(x))) + self.direct(x)
