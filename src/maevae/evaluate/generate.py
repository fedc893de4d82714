"""Images from a trained run: samples from the prior and reconstructions of test images."""

from __future__ import annotations

from pathlib import Path

import torch

from maevae.data.transforms import model_inputs, to_unit
from maevae.device import autocast
from maevae.runs.load import load_run

__all__ = ["reconstruct_images", "sample_images"]


@torch.no_grad()
def sample_images(run_dir: str | Path, device: torch.device, n: int, seed: int) -> torch.Tensor:
    """``n`` samples of the run in ``run_dir`` drawn with ``seed``: float CPU
    ``[n, C, H, W]`` in [0, 1] (for figures; :meth:`maevae.Run.sample` gives uint8)."""
    run = load_run(run_dir, device)
    g = torch.Generator(device=device).manual_seed(seed)
    with autocast(device, "fp32"):
        x = run.model.sample(n, generator=g)
    return to_unit(x, run.config.data.binarize)


@torch.no_grad()
def reconstruct_images(run_dir: str | Path, data_root: str | None, device: torch.device,
                       n: int, code: str = "mu", seed: int = 0
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test images (thresholded) and their greedy reconstructions, in [0, 1].

    ``code`` picks the latent decoded (:meth:`maevae.models.vae.VAE.reconstruct`): ``"mu"``
    (default) or the authors' ``"mean50"`` (mean of 50 posterior samples, drawn from a
    generator seeded with ``seed``) or ``"sample"``.
    """
    run = load_run(run_dir, device)
    binarize = run.config.data.binarize
    x = model_inputs(run.load_data(data_root).test_x[:n], binarize).to(device)  # thresholded
    g = torch.Generator(device=device).manual_seed(seed)
    return to_unit(x, binarize), to_unit(run.model.reconstruct(x, code, g), binarize)

