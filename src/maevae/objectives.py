"""ELBO terms, free bits and the MAE regularizers (paper §3.2, Eq. 4-8; SPEC §2).

Public API::

    d = posterior_divergence(mu, logvar, form="code")   # mu, logvar: [B, D]
    d.mpd      # sum_k M_k, M_k = mean over the B(B-1) ordered pairs of KL_k(i || j)
    d.std      # unbiased std of the total pairwise KL T_ij = sum_k KL_k(i || j), i != j
    d.diverse  # L_diverse before eta: sum_k softplus(-M_k) ("code") or Eq. 8 ("paper")

    loss = training_loss(recon, kl, mu, logvar, cfg.objective, data_dims)   # LossTerms

The posterior-collapse remedies enter :func:`training_loss` as switches (docs/remedies.md):
the KL weight beta_t (:mod:`maevae.kl_schedule`), per-dimension free bits
(:func:`free_bits_per_dim`) and the InfoVAE MMD term (:func:`maevae.distributions.mmd2`).

The pairwise KL between diagonal Gaussians, per dimension k, in the direction i -> j::

    KL_k(i || j) = 1/2 [ s_ik / (s_jk + 1e-12) + (mu_ik - mu_jk)^2 / (s_jk + 1e-12)
                         - (logvar_ik - logvar_jk) - 1 ],      s = exp(logvar)

The "code" form never builds the [B, B, D] tensor: M_k comes from per-dimension sums and the
[B, B] total-KL matrix from two matrix products (see :func:`pairwise_total_kl`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from maevae.config import ObjectiveConfig
from maevae.distributions import VAR_EPS, mmd2
from maevae.errors import MaevaeError

__all__ = [
    "LossTerms",
    "MIN_DIVERGENCE_BATCH",
    "MIN_MPD_BATCH",
    "MIN_STD_BATCH",
    "PosteriorDivergence",
    "batch_mpd_std",
    "free_bits_per_dim",
    "free_bits_threshold",
    "mean_or_none",
    "mean_pairwise_kl_per_dim",
    "pairwise_kl",
    "pairwise_total_kl",
    "posterior_divergence",
    "training_loss",
]


def pairwise_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL_k(i || j) for all ordered pairs: [B, D] -> [B, B, D] (diagonal set to 0)."""
    var = logvar.exp()
    mu_i, mu_j = mu[:, None, :], mu[None, :, :]  # [B, 1, D], [1, B, D]
    lv_i, lv_j = logvar[:, None, :], logvar[None, :, :]
    var_i, var_j = var[:, None, :], var[None, :, :]
    kl = 0.5 * (var_i / (var_j + VAR_EPS) + (mu_i - mu_j).pow(2) / (var_j + VAR_EPS)
                - (lv_i - lv_j) - 1.0)  # [B, B, D]
    eye = torch.eye(mu.shape[0], dtype=torch.bool, device=mu.device)
    return kl.masked_fill(eye[:, :, None], 0.0)


def pairwise_total_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """T_ij = sum_k KL_k(i || j) as a [B, B] matrix via matrix products (diagonal 0).

    Expanding the square: T_ij = 1/2 [ (s_i + mu_i^2) . r_j - 2 mu_i . (mu_j r_j)
    + (mu_j^2 r_j + logvar_j) . 1 - logvar_i . 1 - D ],  r = 1 / (s + 1e-12).
    """
    r = 1.0 / (logvar.exp() + VAR_EPS)  # [B, D]
    a = logvar.exp() + mu.pow(2)  # [B, D]
    t = a @ r.T - 2.0 * (mu @ (mu * r).T)  # [B, B]
    t = t + ((mu.pow(2) * r).sum(1) + logvar.sum(1))[None, :] - logvar.sum(1)[:, None]
    t = 0.5 * (t - mu.shape[1])
    eye = torch.eye(mu.shape[0], dtype=torch.bool, device=mu.device)
    return t.masked_fill(eye, 0.0)


def mean_pairwise_kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """M_k = (1 / (B(B-1))) sum_{i != j} KL_k(i || j) in O(B D): [B, D] -> [D]."""
    b = mu.shape[0]
    s = logvar.exp()
    r = 1.0 / (s + VAR_EPS)  # [B, D]
    sum_r = r.sum(0)
    # sum_{i,j} (mu_i - mu_j)^2 r_j = sum_j r_j (sum_i mu_i^2 - 2 mu_j sum_i mu_i + B mu_j^2)
    sq = (r * (mu.pow(2).sum(0) - 2.0 * mu * mu.sum(0) + b * mu.pow(2))).sum(0)
    total = 0.5 * (s.sum(0) * sum_r + sq - b * b)  # sum over all i, j (log terms cancel)
    diag = 0.5 * (s * r - 1.0).sum(0)  # the i == j terms (zero up to the 1e-12)
    return (total - diag) / (b * (b - 1))


@dataclass
class PosteriorDivergence:
    """Batch statistics of the mutual posterior divergence, in nats (see
    :func:`posterior_divergence`): ``mpd``, ``std``, ``diverse`` 0-d tensors, ``per_dim``
    [D]."""

    mpd: torch.Tensor
    std: torch.Tensor
    diverse: torch.Tensor
    per_dim: torch.Tensor  # M_k, [D]


def posterior_divergence(mu: torch.Tensor, logvar: torch.Tensor,
                         form: Literal["code", "paper"] = "code") -> PosteriorDivergence:
    """MPD, STD and L_diverse (before eta) of a batch of diagonal-Gaussian posteriors.

    The mutual posterior divergence of the paper (§3.2): for posteriors
    q_i = N(mu_i, diag exp(logvar_i)), i = 1..B, and each latent dimension k::

        KL_k(i || j) = 1/2 [ s_ik / s_jk + (mu_ik - mu_jk)^2 / s_jk - log(s_ik / s_jk) - 1 ]
        M_k  = 1 / (B(B-1)) sum_{i != j} KL_k(i || j)             (s = exp(logvar))
        mpd  = sum_k M_k
        std  = unbiased std over the B(B-1) ordered pairs of T_ij = sum_k KL_k(i || j)

    (1e-12 is added to each s_jk divisor.) mu, logvar: [B, D] float tensors (half precision
    is computed in fp32), e.g. ``Run.posterior(images)``; B >= 2, else a one-line
    :class:`~maevae.errors.MaevaeError`. Returns a :class:`PosteriorDivergence` of 0-d
    tensors ``mpd``, ``std``, ``diverse`` and ``per_dim`` [D] (= M_k), differentiable in mu
    and logvar.
    With B = 2 ``std`` is |T_12 - T_21| / sqrt 2, the asymmetry of the one pair's KL;
    reported statistics need B >= 3 (:data:`MIN_STD_BATCH`).
    form="code":  L_diverse = sum_k softplus(-M_k)              (authors' released code)
    form="paper": L_diverse = 1/M sum_{i != j} sum_k softplus(-KL_k(i || j))   (Eq. 8)
    """
    if mu.ndim != 2 or logvar.shape != mu.shape:
        raise MaevaeError(f"posterior_divergence: mu and logvar must both be [B, D], got "
                          f"{list(mu.shape)} and {list(logvar.shape)}")
    b = mu.shape[0]
    if b < 2:
        raise MaevaeError(f"posterior_divergence needs a batch of at least 2 posteriors, got "
                          f"B = {b}")
    if mu.dtype in (torch.float16, torch.bfloat16):  # the pairwise sums need >= fp32
        mu, logvar = mu.float(), logvar.float()
    per_dim = mean_pairwise_kl_per_dim(mu, logvar)  # [D]
    mpd = per_dim.sum()
    t = pairwise_total_kl(mu, logvar)  # [B, B]
    off = ~torch.eye(b, dtype=torch.bool, device=mu.device)
    n_pairs = b * (b - 1)
    dev = (t - mpd)[off]  # [B(B-1)]
    std = (dev.pow(2).sum() / max(n_pairs - 1, 1)).sqrt() if n_pairs > 1 else mpd * 0
    if form == "code":
        diverse = F.softplus(-per_dim).sum()
    elif form == "paper":
        kl = pairwise_kl(mu, logvar)  # [B, B, D]
        diverse = F.softplus(-kl[off]).sum() / n_pairs
    else:
        raise ValueError(f"unknown form {form!r}; allowed: 'code', 'paper'")
    return PosteriorDivergence(mpd=mpd, std=std, diverse=diverse, per_dim=per_dim)


# The small-batch rule of every reported MPD / STD (validation, test statistics, latent
# diagnostics): MPD needs at least one pair, B >= 2. STD is the spread of the pairwise
# divergences over pairs and needs two distinct pairs, B >= 3: with B = 2 the B(B-1) = 2
# "samples" are KL(1||2) and KL(2||1) of the one pair, and their std |T_12 - T_21| / sqrt 2
# measures only the asymmetry of KL (training refuses gamma > 0 with batch_size < 3 for the
# same reason). A batch too small for a statistic does not contribute to it; when no batch
# qualifies the statistic is None ("n/a", null in the files), never 0.
MIN_MPD_BATCH = 2
MIN_STD_BATCH = 3
MIN_DIVERGENCE_BATCH = MIN_MPD_BATCH  # the smallest batch that has any divergence statistic


def batch_mpd_std(mu: torch.Tensor, logvar: torch.Tensor
                  ) -> tuple[float | None, float | None] | None:
    """MPD and STD of one batch of posteriors as floats: None for a batch of fewer than
    ``MIN_MPD_BATCH`` posteriors, ``(mpd, None)`` for one of fewer than ``MIN_STD_BATCH``.
    Half precision is computed in fp32, float64 input (the diagnostics) in float64."""
    b = mu.shape[0]
    if b < MIN_MPD_BATCH:
        return None
    d = posterior_divergence(mu, logvar)
    return float(d.mpd), (float(d.std) if b >= MIN_STD_BATCH else None)


def mean_or_none(values: list[float]) -> float | None:
    """The unweighted mean of the qualifying batches' values; None when no batch qualified."""
    return sum(values) / len(values) if values else None


def free_bits_threshold(cfg: ObjectiveConfig, data_dims: int) -> float:
    """Free-bits floor in nats on the batch-mean total KL (0 when off, and for ``per_dim``,
    whose floor is per latent dimension: :func:`free_bits_per_dim`)."""
    if cfg.free_bits_mode in ("off", "per_dim"):
        return 0.0
    if cfg.free_bits_mode == "batch_total":
        return cfg.free_bits
    return cfg.free_bits * data_dims  # per_datadim: 0.01 × 784 = 7.84 nats


def free_bits_per_dim(kl_per_dim: torch.Tensor, nats: float) -> torch.Tensor:
    """Free bits per latent dimension (Kingma et al., 2016, "Improved Variational Inference
    with Inverse Autoregressive Flow", §C.8): sum_k max(lambda, mean_b KL_bk).

    kl_per_dim: [B, D] per-example, per-dimension KL; nats: lambda. Returns a 0-d tensor; a
    dimension whose batch-mean KL is below lambda gets no gradient from the KL term.
    """
    return torch.clamp(kl_per_dim.mean(0), min=nats).sum()  # [D] -> []


@dataclass
class LossTerms:
    """Scalar parts of one step's loss; ``loss`` is what is differentiated. ``kl_weight``
    and ``mmd`` are None (and not logged) unless their remedy is on."""

    loss: torch.Tensor
    recon: torch.Tensor  # batch mean
    kl: torch.Tensor  # batch mean (before free bits and the KL weight)
    elbo: torch.Tensor  # recon + kl (a negative ELBO, nats per example)
    mpd: torch.Tensor
    std: torch.Tensor
    diverse: torch.Tensor  # before eta
    smooth: torch.Tensor  # = std (before gamma)
    kl_weight: torch.Tensor | None = None  # beta_t (KL weight / annealing on)
    mmd: torch.Tensor | None = None  # MMD^2(z_q, z_p) before lambda (mmd_weight > 0)

    def scalars(self) -> dict[str, float]:
        """Every term that is set as a Python float (for logging)."""
        return {k: float(v.detach()) for k, v in self.__dict__.items() if v is not None}


def _kl_weight_logged(cfg: ObjectiveConfig) -> bool:
    return cfg.kl_anneal != "off" or cfg.kl_weight != 1.0


def training_loss(recon: torch.Tensor, kl: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                  cfg: ObjectiveConfig, data_dims: int, free_bits: bool = True, *,
                  kl_weight: float = 1.0, kl_per_dim: torch.Tensor | None = None,
                  z: torch.Tensor | None = None,
                  z_prior: torch.Tensor | None = None) -> LossTerms:
    """The loss of one step, VLAE or MAE: mean_b recon_b + beta_t·max(mean_b kl_b, FB)
    + eta·L_diverse + gamma·STD + lambda·MMD^2(z, z_prior) (eta = gamma = lambda = 0,
    beta_t = 1: the plain (V)LAE ELBO with free bits).

    recon, kl: [B] per-example terms; mu, logvar: [B, D]. The regularizers are added to the
    per-example ELBO without any further scaling, as in the authors' code (SPEC §2.9).
    ``kl_weight``: beta_t of :func:`maevae.kl_schedule.kl_weight`, applied after the free-bits
    clamp. ``free_bits_mode: per_dim`` replaces the clamp by :func:`free_bits_per_dim` of
    ``kl_per_dim`` [B, D]. ``mmd_weight`` > 0 (InfoVAE, Zhao et al., 2017) needs ``z`` [B, D],
    one posterior sample per example, and ``z_prior`` [m, D] drawn from p(z) (the trainer
    passes both in the prior's N(0, I) base space: ``Terms.z_base`` and N(0, I) draws). The
    logged ``elbo`` is always the unweighted recon + kl.
    """
    r, k = recon.mean(), kl.mean()
    if free_bits and cfg.free_bits_mode == "per_dim":
        if kl_per_dim is None:
            raise MaevaeError("objective.free_bits_mode=per_dim needs the per-dimension KL of a "
                              "standard normal prior: set model.prior.type=normal")
        kl_term = free_bits_per_dim(kl_per_dim, cfg.free_bits)
    else:
        fb = free_bits_threshold(cfg, data_dims) if free_bits else 0.0
        kl_term = torch.clamp(k, min=fb) if fb > 0 else k
    loss = r + kl_term if kl_weight == 1.0 else r + kl_weight * kl_term
    if mu.shape[0] >= 2:
        d = posterior_divergence(mu, logvar, cfg.div_form)
        mpd, std, diverse = d.mpd, d.std, d.diverse
    else:
        mpd = std = diverse = torch.zeros((), device=mu.device)
    if cfg.eta > 0:
        loss = loss + cfg.eta * diverse
    if cfg.gamma > 0:
        loss = loss + cfg.gamma * std
    mmd = None
    if cfg.mmd_weight > 0:
        if z is None or z_prior is None:
            raise MaevaeError("objective.mmd_weight > 0 needs the posterior samples z and prior "
                              "samples z_prior (the trainer passes both)")
        mmd = mmd2(z, z_prior, cfg.mmd_kernel, cfg.mmd_bandwidth, cfg.mmd_estimator)
        loss = loss + cfg.mmd_weight * mmd
    logged = _kl_weight_logged(cfg) or kl_weight != 1.0
    beta = torch.tensor(float(kl_weight), dtype=torch.float64) if logged else None
    return LossTerms(loss=loss, recon=r, kl=k, elbo=r + k, mpd=mpd, std=std, diverse=diverse,
                     smooth=std, kl_weight=beta, mmd=mmd)
