"""Validation / test statistics as in the authors' ``eval`` (SPEC §3.3, §5.4).

Over consecutive batches of ``batch`` images (512 for binary data): RE and KL with S
posterior samples, averaged per image; MPD and STD of each batch's posteriors, averaged per
batch. A batch too small for a statistic is left out of it (MPD needs 2 images, STD 3:
:func:`maevae.objectives.batch_mpd_std`); when no batch qualifies, the statistic is None
("n/a", null in ``metrics.jsonl`` / ``eval.json``), never 0.

``chunk`` bounds the decoder's work per pass to ``chunk`` images × samples, as the IS pass
does (``eval.nll_chunk``): a batch of 512 images with 5 samples is decoded as 2,560 images in
one pass otherwise, several GiB of activations. The noise of a batch is drawn in one piece
whatever the chunking, so chunked and unchunked statistics agree to rounding.

:func:`approximate_mutual_information` is He et al.'s (2019) I_q, the torch estimate that
decides when aggressive inference-network training ends (:mod:`maevae.train.aggressive`).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from maevae.device import autocast
from maevae.models.vae import VAE, Terms
from maevae.objectives import batch_mpd_std, mean_or_none

__all__ = ["NA", "approximate_mutual_information", "batch_statistics", "fmt_stat"]

NA = "n/a"  # how a statistic that no batch qualified for is printed


def fmt_stat(v: float | None, digits: int = 2) -> str:
    """``v`` with ``digits`` decimals; "n/a" for None (see the small-batch rule above)."""
    return NA if v is None else f"{v:.{digits}f}"


def _chunked_terms(model: VAE, xb: torch.Tensor, n_samples: int,
                   generator: torch.Generator | None, chunk: int | None) -> Terms:
    """``model.terms(xb, n_samples, generator)`` with at most ``chunk`` images × samples per
    decoder pass (None: one pass). The noise eps [S, B, D] is drawn for the whole batch by
    the posterior's own :meth:`~maevae.distributions.DiagGaussian.noise`, as ``terms`` draws
    it, then sliced per chunk."""
    b = xb.shape[0]
    if chunk is None or b * n_samples <= chunk:
        return model.terms(xb, n_samples, generator)
    # the noise's dtype and device from the posterior of one image (the encoder runs once
    # per image, in the chunks below), its shape from the whole batch: q.noise's own draw
    q1 = model.encoder(xb[:1])
    eps = dataclasses.replace(q1, mu=q1.mu.expand(b, *q1.mu.shape[1:]),
                              logvar=q1.logvar.expand(b, *q1.logvar.shape[1:])
                              ).noise(n_samples, generator)  # [S, B, D]
    step = max(1, chunk // n_samples)  # images per decoder pass
    parts = [model.terms(xb[i:i + step], n_samples, eps=eps[:, i:i + step])
             for i in range(0, b, step)]
    return Terms(*(torch.cat([getattr(p, f) for p in parts])
                   for f in ("recon", "kl", "mu", "logvar")))


@torch.no_grad()
def batch_statistics(model: VAE, x: torch.Tensor, batch: int = 512, n_samples: int = 5,
                     generator: torch.Generator | None = None, precision: str = "fp32",
                     progress=None, chunk: int | None = None) -> dict[str, float | None]:
    """x: model-ready images [N, C, H, W] on the model's device -> mean RE, KL, ELBO, MPD, STD.

    ``chunk``: images × posterior samples per decoder pass (None: a whole batch at once)."""
    model.eval()
    device = x.device
    sums = {"recon": 0.0, "kl": 0.0}
    mpds: list[float] = []
    stds: list[float] = []
    for start in range(0, x.shape[0], batch):
        xb = x[start:start + batch]
        with autocast(device, precision):
            t = _chunked_terms(model, xb, n_samples, generator, chunk)
        sums["recon"] += float(t.recon.double().sum())
        sums["kl"] += float(t.kl.double().sum())
        pair = batch_mpd_std(t.mu.float(), t.logvar.float())
        if pair is not None:
            mpds.append(pair[0])
            if pair[1] is not None:
                stds.append(pair[1])
        if progress is not None:
            progress(xb.shape[0])
    n = x.shape[0]
    out = {"recon": sums["recon"] / n, "kl": sums["kl"] / n}
    out["elbo"] = out["recon"] + out["kl"]
    out["mpd"] = mean_or_none(mpds)
    out["std"] = mean_or_none(stds)
    return out


def approximate_mutual_information(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor,
                                   chunk: int = 256) -> float:
    """He et al. (2019, "Lagging inference networks", §4 and their ``calc_mi``) I_q of N
    diagonal-Gaussian posteriors q(z|x_n) = N(mu_n, diag exp(logvar_n)), mu / logvar [N, D]:

        I_q = E_n[ E_q(z|x_n) log q(z|x_n) ] - E_n[ log q(z_n) ],
        q(z) = 1/N sum_m q(z|x_m),  z_n = mu_n + exp(logvar_n / 2) * eps_n  (one z each),

    the first term in closed form (minus the entropy: -D/2 log 2 pi - 1/2 sum_d (1 +
    logvar_nd)), the second by Monte Carlo with the noise ``eps`` [N, D]. Computed in float64,
    ``chunk`` query rows at a time (memory O(chunk * N * D)). Bounded above by about log N.
    """
    mu, logvar, eps = mu.double(), logvar.double(), eps.double()
    n, d = mu.shape
    neg_entropy = (-0.5 * d * math.log(2 * math.pi) - 0.5 * (1 + logvar).sum(-1)).mean()
    z = mu + (0.5 * logvar).exp() * eps  # [N, D]
    inv_var = (-logvar).exp()  # [N, D]
    norm = 0.5 * (d * math.log(2 * math.pi) + logvar.sum(-1))  # [N]
    log_qz = []
    for start in range(0, n, chunk):
        zc = z[start:start + chunk, None, :]  # [b, 1, D]
        log_density = -0.5 * ((zc - mu[None]) ** 2 * inv_var[None]).sum(-1) - norm  # [b, N]
        log_qz.append(torch.logsumexp(log_density, dim=1) - math.log(n))  # [b]
    return float(neg_entropy - torch.cat(log_qz).mean())
