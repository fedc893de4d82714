"""Encoding uint8 images to latent codes with a trained model's encoder (SPEC §5.1).

Images go in exactly as the datasets hold them (uint8 ``[N, C, H, W]``) and are made model
input by :func:`maevae.data.transforms.model_inputs`: thresholded at 0.5 (a pixel becomes 1
iff ``value / 255 > 0.5``, i.e. ``value >= 128``) for the binary models, scaled to [-1, 1]
for the 8-bit colour model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from maevae.data.transforms import model_inputs
from maevae.distributions import DiagGaussian
from maevae.errors import MaevaeError
from maevae.models.vae import LATENT_CODES, MEAN_SAMPLES, posterior_code

__all__ = ["ENCODE_BATCH", "LATENTS", "MEAN_SAMPLES", "encode_images"]

LATENTS = LATENT_CODES
ENCODE_BATCH = 500


@torch.no_grad()
def encode_images(model, x_u8: np.ndarray, binarize: bool, latent: str = "mu",
                  device: torch.device | None = None, generator: torch.Generator | None = None,
                  batch: int = ENCODE_BATCH, on_batch: Callable[[int], None] | None = None
                  ) -> dict[str, torch.Tensor]:
    """Encode uint8 images [N, C, H, W] in batches; returns float32 CPU tensors.

    ``{"codes": [N, D], "mu": [N, D], "logvar": [N, D]}``. ``codes`` is ``mu`` for
    ``latent="mu"``, the mean of 50 reparameterised samples of q(z|x) for ``"mean50"``
    (= mu + sigma * noise / sqrt(50)) and one sample for ``"sample"`` (drawn with
    ``generator``, which must live on ``device``). ``on_batch(n)`` reports progress.
    """
    device = device or next(model.parameters()).device
    model.eval()
    out: dict[str, list[torch.Tensor]] = {"codes": [], "mu": [], "logvar": []}
    for start in range(0, len(x_u8), batch):
        x = model_inputs(x_u8[start:start + batch], binarize).to(device)
        q = model.encoder(x)
        mu, logvar = q.mu.float().flatten(1), q.logvar.float().flatten(1)  # [B, D]
        z = posterior_code(DiagGaussian(mu, logvar), latent, generator)  # [B, D]
        out["codes"].append(z.cpu())
        out["mu"].append(mu.cpu())
        out["logvar"].append(logvar.cpu())
        if on_batch is not None:
            on_batch(x.shape[0])
    if not out["codes"]:
        raise MaevaeError("no images to encode: the split is empty")
    return {k: torch.cat(v) for k, v in out.items()}
