"""Importance-sampled log-likelihood (Burda et al. 2015; SPEC §3.3).

For each image x, with K samples z_k ~ q(z|x)::

    log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x)
    log p(x) ≈ logsumexp_k log w_k - log K                 (the IS estimate)
    ELBO     = mean_k log w_k   <=  the IS estimate (in expectation)

The encoder runs once per image; the K samples stream through the prior and the decoder
in chunks of at most ``chunk`` (image, sample) pairs, so memory is bounded whatever K is.
Logsumexp statistics are accumulated online, so nothing of size K is kept.
With ``autocast_dtype=torch.bfloat16`` only the decoder runs under autocast (its output
head in fp32, see :mod:`maevae.models.decoders`); encoder and prior stay fp32.
The Monte-Carlo standard error of log p̂(x) uses the delta method:
se ≈ sqrt(Var(w) / K) / mean(w), computed from the running logsumexp of w and w².
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from maevae.device import autocast_to
from maevae.models.vae import VAE

__all__ = [
    "LikelihoodResult",
    "bits_per_dim",
    "importance_sampled_batch",
    "importance_sampled_nll",
    "iterate_batches",
]


@dataclass
class LikelihoodResult:
    """Per-example results [N] in nats (``nll`` = -log p̂(x), ``elbo`` = -mean_k log w_k)."""

    nll: torch.Tensor
    nll_mc_stderr: torch.Tensor
    elbo: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor


def _lse_update(acc: torch.Tensor | None, new: torch.Tensor) -> torch.Tensor:
    """Combine a running logsumexp [B] with a chunk [c, B]."""
    chunk = torch.logsumexp(new, dim=0)
    return chunk if acc is None else torch.logaddexp(acc, chunk)


@torch.no_grad()
def importance_sampled_batch(model: VAE, x: torch.Tensor, k: int, chunk: int = 512,
                             generator: torch.Generator | None = None,
                             autocast_dtype: torch.dtype | None = None) -> LikelihoodResult:
    """IS estimates for a batch x [B, C, H, W] with K samples each."""
    b = x.shape[0]
    q = model.encoder(x)
    per_pass = max(1, chunk // b)
    lse1 = lse2 = None
    sum_logpx = torch.zeros(b, dtype=torch.float64, device=x.device)
    sum_kl = torch.zeros_like(sum_logpx)
    done = 0
    while done < k:
        c = min(per_pass, k - done)
        z = q.rsample(c, generator)  # [c, B, D]
        log_q = q.log_prob(z)  # [c, B]
        # the flow prior stays fp32: its log-density is a sum over D dimensions of
        # log-scales and loses up to nats per sample in bf16 (BENCHMARKS.md), at ~1% of the cost
        log_pz = model.prior.log_prob(z)  # [c, B]
        with autocast_to(x.device, autocast_dtype):
            log_px = model.decoder.log_prob(x, z).float()  # [c, B]
        log_w = (log_px + log_pz - log_q).double()  # [c, B]
        lse1 = _lse_update(lse1, log_w)
        lse2 = _lse_update(lse2, 2 * log_w)
        sum_logpx += log_px.double().sum(0)
        sum_kl += (log_q - log_pz).double().sum(0)
        done += c
    log_k = math.log(k)
    log_mean_w = lse1 - log_k
    # relative variance of w: E[w^2]/E[w]^2 - 1, unbiased (K / (K-1)), clamped at 0
    rel = ((lse2 - log_k) - 2 * log_mean_w).exp() - 1.0
    rel = rel.clamp_min(0) * (k / max(k - 1, 1))
    stderr = (rel / k).sqrt()
    recon = -sum_logpx / k
    kl = sum_kl / k
    return LikelihoodResult(nll=-log_mean_w, nll_mc_stderr=stderr, elbo=recon + kl,
                            recon=recon, kl=kl)


def iterate_batches(x: torch.Tensor, k: int, chunk: int) -> Iterator[slice]:
    """Image slices so that one pass holds about ``chunk`` (image, sample) pairs."""
    per = max(1, chunk // max(k, 1))
    for start in range(0, x.shape[0], per):
        yield slice(start, min(start + per, x.shape[0]))


@torch.no_grad()
def importance_sampled_nll(model: VAE, x: torch.Tensor, k: int, chunk: int = 512,
                           generator: torch.Generator | None = None,
                           autocast_dtype: torch.dtype | None = None,
                           progress=None) -> LikelihoodResult:
    """IS estimates for all images in x [N, C, H, W] (already binarised, on the model's device)."""
    parts = []
    for sl in iterate_batches(x, k, chunk):
        parts.append(importance_sampled_batch(model, x[sl], k, chunk, generator, autocast_dtype))
        if progress is not None:
            progress(sl.stop - sl.start)
    return LikelihoodResult(*(torch.cat([getattr(p, f) for p in parts]) for f in
                              ("nll", "nll_mc_stderr", "elbo", "recon", "kl")))


def bits_per_dim(nll_nats: float, data_dims: int) -> float:
    """Nats per image -> bits per dimension."""
    return nll_nats / (data_dims * math.log(2))
