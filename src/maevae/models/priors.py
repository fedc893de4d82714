"""Priors p(z): the standard normal and the MADE affine autoregressive flow (SPEC §1.4).

Flow layer (density direction z -> eps, one parallel pass)::

    eps = mu(z) + z * exp(s(z) / 2),      log|det d eps/d z| = sum_i s_i(z) / 2

with two separate MADEs for the shift mu(.) and the log-variance s(.). Sampling inverts it
coordinate by coordinate: z_i = (eps_i - mu_i(z_<i)) / (exp(s_i(z_<i) / 2) + 1e-12).
The stack has ``blocks`` dual blocks; each applies an order-B layer then an order-A layer in
the density direction; sampling runs the exact inverse.
log p(z) = log N(eps; 0, I) + sum over layers of the log-determinants.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from maevae.distributions import standard_normal_log_prob
from maevae.nn.made import MADE


class StandardNormalPrior(nn.Module):
    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """[..., D] -> [...]."""
        return standard_normal_log_prob(z)

    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator, device=device)


class AFLayer(nn.Module):
    """One affine autoregressive-flow layer with separate shift and log-variance MADEs."""

    def __init__(self, d: int, hidden: int, order: Literal["A", "B"], init_scale: float):
        super().__init__()
        self.d = d
        self.shift = MADE(d, hidden, order, init_scale)
        self.logvar = MADE(d, hidden, order, init_scale)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Density direction: z [..., D] -> (eps [..., D], logdet [...])."""
        s = self.logvar(z)
        eps = self.shift(z) + z * (0.5 * s).exp()
        return eps, 0.5 * s.sum(-1)

    @torch.no_grad()
    def inverse(self, eps: torch.Tensor) -> torch.Tensor:
        """Sampling direction, D sequential MADE passes: eps [..., D] -> z [..., D].

        Iterating ``z <- (eps - mu(z)) / exp(s(z)/2)`` from z = 0 fixes one more coordinate
        per pass (the Jacobian is triangular), so after D passes z is exact, in either order.
        """
        z = torch.zeros_like(eps)
        for _ in range(self.d):
            z = (eps - self.shift(z)) / ((0.5 * self.logvar(z)).exp() + 1e-12)
        return z


class AFPrior(nn.Module):
    """``blocks`` dual blocks of (order-B, order-A) AF layers over a D-dim latent."""

    def __init__(self, latent_dim: int, blocks: int = 4, hidden: int = 320,
                 init_scale: float = 0.1):
        super().__init__()
        self.latent_dim = latent_dim
        layers = []
        for _ in range(blocks):
            layers += [AFLayer(latent_dim, hidden, "B", init_scale),
                       AFLayer(latent_dim, hidden, "A", init_scale)]
        self.layers = nn.ModuleList(layers)

    def to_base(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z [..., D] -> (eps [..., D], total logdet [...])."""
        logdet = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for layer in self.layers:
            z, ld = layer(z)
            logdet = logdet + ld
        return z, logdet

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z): [..., D] -> [...]."""
        eps, logdet = self.to_base(z)
        return standard_normal_log_prob(eps) + logdet

    @torch.no_grad()
    def from_base(self, eps: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            eps = layer.inverse(eps)
        return eps

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
        eps = torch.randn(n, self.latent_dim, generator=generator, device=device)
        return self.from_base(eps)
