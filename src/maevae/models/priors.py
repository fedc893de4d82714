"""Priors p(z): the standard normal, the MADE affine autoregressive flow over a D-dim latent
(SPEC §1.4) and the MADE2d flow over a 2-D latent map (the CIFAR-10 prior, SPEC §1.6).

Flow layer (density direction z -> eps, one parallel pass)::

    eps = mu(z) + z * exp(s(z) / 2),      log|det d eps/d z| = sum_i s_i(z) / 2

with two separate MADEs for the shift mu(.) and the log-variance s(.). Sampling inverts it
coordinate by coordinate: z_i = (eps_i - mu_i(z_<i)) / (exp(s_i(z_<i) / 2) + 1e-12).
The stack has ``blocks`` dual blocks; each applies an order-B layer then an order-A layer in
the density direction; sampling runs the exact inverse.
log p(z) = log N(eps; 0, I) + sum over layers of the log-determinants.

The 2-D prior does the same over z [N, C, H, W] with MADE2d nets, autoregressive over
spatial positions (all channels of a position at once); it takes and returns the latent
flattened to [..., C·H·W] and reshapes it internally. One :class:`AffineAFLayer` serves
both (:class:`AFLayer` with MADEs, :class:`AF2dLayer` with MADE2d nets).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from maevae.distributions import standard_normal_log_prob
from maevae.nn.made import MADE
from maevae.nn.made2d import MADE2d

__all__ = [
    "AF2dLayer",
    "AFLayer",
    "AFPrior",
    "AFStackPrior",
    "AffineAFLayer",
    "Made2dAFPrior",
    "StandardNormalPrior",
]


class StandardNormalPrior(nn.Module):
    """The prior p(z) = N(0, I) over D dimensions (``prior.type: normal``)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """[..., D] -> [...]."""
        return standard_normal_log_prob(z)

    def log_prob_with_base(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(z) [...], the base-space point [..., D]): here z itself."""
        return standard_normal_log_prob(z), z

    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """``n`` draws z [n, D] from N(0, I) on ``device``."""
        return torch.randn(n, self.latent_dim, generator=generator, device=device)


class AffineAFLayer(nn.Module):
    """One affine autoregressive-flow layer over two separate autoregressive nets, the
    shift mu(.) and the log-variance s(.) (a MADE pair for z [..., D], a MADE2d pair for
    z [N, C, H, W]; the layers below build them)::

        eps = mu(z) + z * exp(s(z) / 2),      log|det| = sum of s / 2 over one latent

    ``event_dims`` trailing axes make one latent (1: [D]; 3: [C, H, W]); the last
    ``position_dims`` of them are the autoregressive positions (1: every coordinate;
    2: every spatial position, all its channels at once).
    """

    def __init__(self, make_net: Callable[[], nn.Module], event_dims: int, position_dims: int):
        super().__init__()
        self.shift = make_net()
        self.logvar = make_net()
        self.event_dims, self.position_dims = event_dims, position_dims

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Density direction, one pass: z [..., *event] -> (eps [..., *event], logdet [...])."""
        s = self.logvar(z)
        eps = self.shift(z) + z * (0.5 * s).exp()
        return eps, 0.5 * s.flatten(-self.event_dims).sum(-1)  # [..., prod(event)] -> [...]

    @torch.no_grad()
    def inverse(self, eps: torch.Tensor) -> torch.Tensor:
        """Sampling direction, one sequential pass per position: eps [..., *event] -> z.

        Iterating ``z <- (eps - mu(z)) / exp(s(z)/2)`` from z = 0 fixes one more position
        per pass (the Jacobian is block-triangular), so after as many passes as there are
        positions z is exact, in either order.
        """
        z = torch.zeros_like(eps)
        for _ in range(math.prod(eps.shape[-self.position_dims:])):
            z = (eps - self.shift(z)) / ((0.5 * self.logvar(z)).exp() + 1e-12)
        return z


class AFLayer(AffineAFLayer):
    """The affine AF layer over z [..., D] with MADE nets (D sequential passes to invert)."""

    def __init__(self, d: int, hidden: int, order: Literal["A", "B"], init_scale: float):
        super().__init__(lambda: MADE(d, hidden, order, init_scale), event_dims=1,
                         position_dims=1)


class AF2dLayer(AffineAFLayer):
    """The affine AF layer over z [N, C, H, W] with MADE2d nets (H·W sequential passes to
    invert, in either raster order)."""

    def __init__(self, channels: int, hidden: int, order: Literal["A", "B"],
                 init_scale: float, num_hidden: int = 3, kernel_size: int = 3):
        super().__init__(lambda: MADE2d(channels, hidden, order, num_hidden, kernel_size,
                                        init_scale), event_dims=3, position_dims=2)


class AFStackPrior(nn.Module):
    """``blocks`` dual blocks of (order-B, order-A) affine AF layers (density direction)
    over a flattened latent [..., D]; log p(z) = log N(eps; 0, I) + sum of log-dets.

    ``make_layer(order)`` builds one layer; :meth:`_to_layers` gives the layers' view of
    the latent (the identity for a D-dim latent, [N, C, H, W] for a feature map), whose
    last ``event_dims`` axes are one latent.
    """

    event_dims = 1

    def __init__(self, latent_dim: int, blocks: int,
                 make_layer: Callable[[Literal["A", "B"]], AffineAFLayer]):
        super().__init__()
        self.latent_dim = latent_dim
        self.layers = nn.ModuleList(make_layer(order)
                                    for _ in range(blocks) for order in ("B", "A"))

    def _to_layers(self, z: torch.Tensor) -> torch.Tensor:
        """[..., D] -> the layers' input (here: unchanged)."""
        return z

    def to_base(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z [..., D] -> (eps [..., D], total logdet [...])."""
        lead = z.shape[:-1]
        x = self._to_layers(z)
        logdet = torch.zeros(x.shape[:x.dim() - self.event_dims], dtype=z.dtype, device=z.device)
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x.reshape(*lead, self.latent_dim), logdet.reshape(lead)  # [..., D], [...]

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z): [..., D] -> [...]."""
        return self.log_prob_with_base(z)[0]

    def log_prob_with_base(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(z) [...], eps [..., D]): the density and the point's image in the flow's
        N(0, I) base space (one pass; the InfoVAE MMD compares eps with N(0, I) draws)."""
        eps, logdet = self.to_base(z)
        return standard_normal_log_prob(eps) + logdet, eps

    @torch.no_grad()
    def from_base(self, eps: torch.Tensor) -> torch.Tensor:
        """eps [..., D] -> z [..., D] (exact inverse of :meth:`to_base`)."""
        lead = eps.shape[:-1]
        x = self._to_layers(eps)
        for layer in reversed(self.layers):
            x = layer.inverse(x)
        return x.reshape(*lead, self.latent_dim)  # [..., D]


class AFPrior(AFStackPrior):
    """The MADE flow prior over a D-dim latent (SPEC §1.4)."""

    def __init__(self, latent_dim: int, blocks: int = 4, hidden: int = 320,
                 init_scale: float = 0.1):
        super().__init__(latent_dim, blocks,
                         lambda order: AFLayer(latent_dim, hidden, order, init_scale))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """``n`` draws z [n, D]: standard-normal noise through the inverse flow."""
        eps = torch.randn(n, self.latent_dim, generator=generator, device=device)
        return self.from_base(eps)


class Made2dAFPrior(AFStackPrior):
    """The MADE2d flow prior over a latent map z_shape = (C, H, W), flattened to
    [..., C·H·W] outside (the CIFAR-10 prior, SPEC §1.6)."""

    event_dims = 3

    def __init__(self, z_shape: tuple[int, int, int] = (16, 8, 8), blocks: int = 4,
                 hidden: int = 128, init_scale: float = 0.1, num_hidden: int = 3,
                 kernel_size: int = 3):
        c, h, w = z_shape
        super().__init__(c * h * w, blocks, lambda order: AF2dLayer(
            c, hidden, order, init_scale, num_hidden, kernel_size))
        self.z_shape = tuple(z_shape)

    def _to_layers(self, z: torch.Tensor) -> torch.Tensor:
        """[..., D] -> [N, C, H, W]."""
        return z.reshape(-1, *self.z_shape)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """n samples [n, D] (64 sequential MADE2d passes per AF layer for 8×8 latents)."""
        dtype = next(self.parameters()).dtype
        eps = torch.randn(n, self.latent_dim, generator=generator, device=device, dtype=dtype)
        return self.from_base(eps)
