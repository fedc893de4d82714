"""A batch normalisation with a fixed scale and a learned shift (BN-VAE's layer on the means).

Zhu et al., 2020, "A Batch Normalized Inference Network Keeps the KL Vanishing Away", §4::

    y_k = gamma * (x_k - m_k) / sqrt(v_k + eps) + beta_k

with m, v the batch mean and biased variance in training mode (running estimates in eval
mode), gamma a FIXED positive number and beta_k learned (initialised to 0). Fixing gamma
keeps the spread of the normalised means at gamma, which bounds the expected KL to a
standard normal prior from below (:func:`maevae.distributions.bn_vae_kl_lower_bound`).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FixedScaleBatchNorm"]


class FixedScaleBatchNorm(nn.Module):
    """``gamma * BatchNorm1d(affine=False)(x) + shift`` over x [B, D]; ``shift`` [D] is
    learned, gamma is not (Zhu et al., 2020)."""

    def __init__(self, features: int, gamma: float, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.gamma = float(gamma)
        self.norm = nn.BatchNorm1d(features, eps=eps, momentum=momentum, affine=False)
        self.shift = nn.Parameter(torch.zeros(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, D] -> gamma * x_hat + shift, [B, D]."""
        return self.gamma * self.norm(x) + self.shift

    def extra_repr(self) -> str:
        """The fixed scale, in the module's printout."""
        return f"gamma={self.gamma}"
