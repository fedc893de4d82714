"""Validation / test statistics as in the authors' ``eval`` (SPEC §3.3, §5.4).

Over consecutive batches of ``batch`` images (512 for binary data): RE and KL with S
posterior samples, averaged per image; MPD and STD of each batch's posteriors, averaged per
batch (a batch of fewer than ``MIN_DIVERGENCE_BATCH`` = 2 images, which has no pair, is left
out of MPD/STD: :func:`maevae.objectives.batch_mpd_std`).
"""

from __future__ import annotations

import torch

from maevae.device import autocast
from maevae.models.vae import VAE
from maevae.objectives import batch_mpd_std


@torch.no_grad()
def batch_statistics(model: VAE, x: torch.Tensor, batch: int = 512, n_samples: int = 5,
                     generator: torch.Generator | None = None, precision: str = "fp32",
                     progress=None) -> dict[str, float]:
    """x: model-ready images [N, C, H, W] on the model's device -> mean RE, KL, ELBO, MPD, STD."""
    model.eval()
    device = x.device
    sums = {"recon": 0.0, "kl": 0.0}
    mpd = std = 0.0
    n_batches = 0
    for start in range(0, x.shape[0], batch):
        xb = x[start:start + batch]
        with autocast(device, precision):
            t = model.terms(xb, n_samples, generator)
        sums["recon"] += float(t.recon.double().sum())
        sums["kl"] += float(t.kl.double().sum())
        pair = batch_mpd_std(t.mu.float(), t.logvar.float())
        if pair is not None:
            mpd += pair[0]
            std += pair[1]
            n_batches += 1
        if progress is not None:
            progress(xb.shape[0])
    n = x.shape[0]
    out = {"recon": sums["recon"] / n, "kl": sums["kl"] / n}
    out["elbo"] = out["recon"] + out["kl"]
    out["mpd"] = mpd / max(n_batches, 1)
    out["std"] = std / max(n_batches, 1)
    return out
