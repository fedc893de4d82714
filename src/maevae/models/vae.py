"""The VAE: encoder q(z|x), prior p(z), decoder p(x|z) composed into per-example terms.

No optimizer and no loss reduction here: :meth:`VAE.terms` returns a :class:`Terms`
container of per-example tensors that :mod:`maevae.objectives` turns into a loss.
:mod:`maevae.models.build` builds a VAE from the config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from maevae.distributions import DiagGaussian, kl_diag_gaussian_standard_normal
from maevae.models.priors import StandardNormalPrior
from maevae.nn.weightnorm import data_dependent_init

__all__ = ["LATENT_CODES", "MEAN_SAMPLES", "Terms", "VAE", "posterior_code"]

# Which latent vector stands for an image (SPEC §5.1): the posterior mean mu(x), the mean of
# 50 reparameterised posterior samples (the authors' reconstructions and visualize.py), or one
# posterior sample. Used by VAE.reconstruct and by the probes' encoder (evaluate/codes.py).
LATENT_CODES = ("mu", "mean50", "sample")
MEAN_SAMPLES = 50


def posterior_code(q: DiagGaussian, code: str = "mu",
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """One latent vector [B, D] per example from q(z|x), chosen by ``code``.

    ``"mu"``: q.mu (no noise drawn). ``"mean50"``: the mean of ``q.rsample(50, generator)``,
    i.e. mu + sigma * mean(eps) (the authors' choice). ``"sample"``: ``q.rsample(1,
    generator)[0]``. ``generator`` must live on q's device.
    """
    if code == "mu":
        return q.mu
    if code not in LATENT_CODES:
        raise ValueError(f"code={code!r}: choose one of {', '.join(LATENT_CODES)}")
    return q.rsample(MEAN_SAMPLES if code == "mean50" else 1, generator).mean(0)


@dataclass
class Terms:
    """Per-example terms of one batch (all in nats).

    recon:  [B]  -E_q log p(x|z)        (mean over S posterior samples)
    kl:     [B]  E_q [log q(z|x) - log p(z)]  (Monte Carlo; analytic for a normal prior)
    mu, logvar: [B, D]  posterior parameters (for the MAE regularizers)
    kl_per_dim: [B, D]  KL_k = KL(N(mu_k, s_k) || N(0, 1)) with kl = sum_k KL_k, for the
                standard normal prior (per-dimension free bits); None for a flow prior, whose
                KL does not split by dimension
    z_base: [B, D]  the first posterior sample z[0] carried into the prior's N(0, I) base
                space (the flow's eps(z); z[0] itself for the standard normal prior), for
                the InfoVAE MMD term
    """

    recon: torch.Tensor
    kl: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    kl_per_dim: torch.Tensor | None = None
    z_base: torch.Tensor | None = None


class VAE(nn.Module):
    """Encoder q(z|x), prior p(z) and decoder p(x|z) for images of ``image_shape``
    ``(C, H, W)``; latents are flat [B, D]. Built by :func:`maevae.build_model`."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, prior: nn.Module,
                 image_shape: tuple[int, int, int]):
        super().__init__()
        self.encoder, self.decoder, self.prior = encoder, decoder, prior
        self.image_shape = tuple(image_shape)

    @property
    def latent_dim(self) -> int:
        """D, the size of a flat latent code."""
        return self.prior.latent_dim

    def posterior(self, x: torch.Tensor) -> DiagGaussian:
        """q(z|x) of images x [B, C, H, W] (model input, not uint8): mu, logvar [B, D]."""
        return self.encoder(x)

    def terms(self, x: torch.Tensor, n_samples: int = 1,
              generator: torch.Generator | None = None, eps: torch.Tensor | None = None) -> Terms:
        """x: [B, C, H, W] -> per-example Terms averaged over ``n_samples`` z's.

        ``eps`` [S, B, D] fixes the standard-normal noise of the reparameterisation (the
        distributed trainer draws it for the global batch so every rank matches one process).
        """
        q = self.encoder(x)
        z = q.rsample(n_samples, generator) if eps is None else q.mu + (0.5 * q.logvar).exp() * eps
        # z: [S, B, D]
        recon = -self.decoder.log_prob(x, z).mean(0)  # [B]
        kl_per_dim = None
        if isinstance(self.prior, StandardNormalPrior):
            kl_per_dim = kl_diag_gaussian_standard_normal(q.mu, q.logvar)  # [B, D]
            kl = kl_per_dim.sum(-1)  # [B]
            base = z
        else:
            log_qz = q.log_prob(z)  # [S, B]; before log p(z), as ever: the same gradients
            log_pz, base = self.prior.log_prob_with_base(z)  # [S, B], [S, B, D]
            kl = (log_qz - log_pz).mean(0)  # [B]
        return Terms(recon=recon, kl=kl, mu=q.mu, logvar=q.logvar, kl_per_dim=kl_per_dim,
                     z_base=base[0])

    def forward(self, x: torch.Tensor, n_samples: int = 1,
                generator: torch.Generator | None = None, eps: torch.Tensor | None = None) -> Terms:
        """The per-example ELBO terms of x [B, C, H, W]; the same as :meth:`terms`."""
        return self.terms(x, n_samples, generator, eps)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Data-dependent init in the authors' order: encoder on x; the prior flow on
        z = mu (its layers use their own init_scale, 0.1); the decoder on (x, z = mu)."""
        was_training = self.training
        self.eval()
        with data_dependent_init(self.encoder):
            q = self.encoder(x)
        if not isinstance(self.prior, StandardNormalPrior):
            with data_dependent_init(self.prior):
                self.prior.log_prob(q.mu)
        with data_dependent_init(self.decoder):
            self.decoder.log_prob(x, q.mu.unsqueeze(0))
        self.train(was_training)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               on_row: Callable[[int], None] | None = None) -> torch.Tensor:
        """``n`` images [n, C, H, W] in model space: z ~ p(z), then x ~ p(x|z).
        ``on_row(k)``: k more image rows done (progress; H in all)."""
        device = next(self.parameters()).device
        z = self.prior.sample(n, generator=generator, device=device)
        return self.decoder.sample(z, generator=generator, on_row=on_row)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, code: str = "mu",
                    generator: torch.Generator | None = None,
                    on_row: Callable[[int], None] | None = None) -> torch.Tensor:
        """Greedy (p >= 0.5; argmax for 8-bit) decoding of one latent vector per image.

        ``code="mu"`` (default) decodes z = mu(x); ``code="mean50"`` decodes the mean of 50
        posterior samples drawn with ``generator``, which is what the authors' reconstructions
        do (``MAE.reconstruct``, k = 50); ``"sample"`` decodes one posterior sample
        (:func:`posterior_code`). ``on_row(k)``: k more image rows decoded (progress).
        """
        z = posterior_code(self.encoder(x), code, generator)
        return self.decoder.sample(z, greedy=True, on_row=on_row)

