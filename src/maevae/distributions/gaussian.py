"""Gaussian densities as small pure functions (SPEC §1.1, §2): the diagonal-Gaussian
posterior q(z|x), its log-density, the standard normal and their analytic KL.

Each function states its direction and its shapes. Everything is in nats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "DiagGaussian",
    "LOG_2PI",
    "VAR_EPS",
    "bn_vae_kl_lower_bound",
    "gaussian_log_prob",
    "kl_diag_gaussian_standard_normal",
    "standard_normal_log_prob",
]

LOG_2PI = math.log(2 * math.pi)
VAR_EPS = 1e-12  # the authors' code adds this to variances in divisions


@dataclass
class DiagGaussian:
    """q(z|x) = N(mu, diag(exp(logvar))); mu, logvar: [B, D]."""

    mu: torch.Tensor
    logvar: torch.Tensor

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The standard-normal noise eps [n, B, D] that :meth:`rsample` turns into z."""
        return torch.randn((n, *self.mu.shape), dtype=self.mu.dtype, device=self.mu.device,
                           generator=generator)

    def rsample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterised samples z = mu + sigma * eps: [n, B, D]."""
        return self.mu + (0.5 * self.logvar).exp() * self.noise(n, generator)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) summed over D; z: [..., B, D] -> [..., B]."""
        return gaussian_log_prob(z, self.mu, self.logvar)


def gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) summed over the last axis (authors' +1e-12 on the variance)."""
    sq = (z - mu).pow(2) / (logvar.exp() + VAR_EPS)
    return -0.5 * (logvar + sq + LOG_2PI).sum(-1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last axis."""
    return -0.5 * (z.pow(2) + LOG_2PI).sum(-1)


def kl_diag_gaussian_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Analytic KL( N(mu, exp(logvar)) || N(0, I) ) per dimension; [..., D] -> [..., D]."""
    return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar)


def bn_vae_kl_lower_bound(gamma: float, beta: torch.Tensor) -> torch.Tensor:
    """BN-VAE's floor on the expected KL to N(0, I) (Zhu et al., 2020, Eq. 6), in nats.

    When the posterior means pass through a batch normalisation with fixed scale gamma and
    learned shifts beta_k, E[mu_k] = beta_k and E[mu_k^2] = gamma^2 + beta_k^2, so::

        E_x KL = 1/2 sum_k (E[mu_k^2] + E[sigma_k^2] - E[log sigma_k^2] - 1)
              >= 1/2 sum_k E[mu_k^2] = 1/2 sum_k (gamma^2 + beta_k^2) >= D gamma^2 / 2

    (sigma^2 - log sigma^2 - 1 >= 0). beta: [D] -> a 0-d tensor. Over one training batch
    the normaliser's eps makes E[mu_k^2] = gamma^2 v_k / (v_k + eps) + beta_k^2 (v_k the
    batch variance), a hair below the bound.
    """
    return 0.5 * (gamma ** 2 + beta.pow(2)).sum()

