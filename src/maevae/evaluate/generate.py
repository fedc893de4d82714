"""Images from a trained run: samples from the prior and reconstructions of test images."""

from __future__ import annotations

from pathlib import Path

import torch

from maevae import console
from maevae.data.transforms import model_inputs, to_unit
from maevae.device import autocast
from maevae.runs.load import load_run

__all__ = ["reconstruct_images", "sample_images"]


@torch.no_grad()
def sample_images(run_dir: str | Path, device: torch.device, n: int, seed: int,
                  progress: bool = False) -> torch.Tensor:
    """``n`` samples of the run in ``run_dir`` drawn with ``seed``: float CPU
    ``[n, C, H, W]`` in [0, 1] (for figures; :meth:`maevae.Run.sample` gives uint8).
    ``progress``: a "sampling" bar over the image rows."""
    run = load_run(run_dir, device)
    g = torch.Generator(device=device).manual_seed(seed)
    rows = run.dir.meta()["image_shape"][1]
    with autocast(device, "fp32"), console.bar(rows, f"sampling {n}", progress, "row") as b:
        x = run.model.sample(n, generator=g, on_row=b.update)
    return to_unit(x, run.config.data.binarize)


@torch.no_grad()
def reconstruct_images(run_dir: str | Path, data_root: str | None, device: torch.device,
                       n: int, code: str = "mu", seed: int = 0, progress: bool = False
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test images (thresholded) and their greedy reconstructions, in [0, 1].

    ``code`` picks the latent decoded (:meth:`maevae.models.vae.VAE.reconstruct`): ``"mu"``
    (default) or the authors' ``"mean50"`` (mean of 50 posterior samples, drawn from a
    generator seeded with ``seed``) or ``"sample"``. ``progress``: a "reconstructing" bar
    over the image rows.
    """
    run = load_run(run_dir, device)
    binarize = run.config.data.binarize
    x = model_inputs(run.load_data(data_root).test_x[:n], binarize).to(device)  # thresholded
    g = torch.Generator(device=device).manual_seed(seed)
    with console.bar(x.shape[-2], f"reconstructing {len(x)}", progress, "row") as b:
        r = run.model.reconstruct(x, code, g, on_row=b.update)
    return to_unit(x, binarize), to_unit(r, binarize)

