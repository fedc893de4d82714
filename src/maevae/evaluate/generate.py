"""Images from a trained run: samples from the prior and reconstructions of test images."""

from __future__ import annotations

from pathlib import Path

import torch

from maevae.data.transforms import model_inputs, to_unit
from maevae.device import autocast
from maevae.runs.directory import RunDir
from maevae.runs.load import load_run_config, load_run_data, load_trained_model


@torch.no_grad()
def sample_images(run_dir: str | Path, device: torch.device, n: int, seed: int) -> torch.Tensor:
    run = RunDir(run_dir)
    cfg = load_run_config(run)
    model, _ = load_trained_model(run, cfg, device)
    g = torch.Generator(device=device).manual_seed(seed)
    with autocast(device, "fp32"):
        x = model.sample(n, generator=g)
    return to_unit(x, cfg.data.binarize)


@torch.no_grad()
def reconstruct_images(run_dir: str | Path, data_root: str | None, device: torch.device,
                       n: int) -> tuple[torch.Tensor, torch.Tensor]:
    run = RunDir(run_dir)
    cfg = load_run_config(run)
    model, _ = load_trained_model(run, cfg, device)
    data = load_run_data(cfg, data_root)
    x = model_inputs(data.test_x[:n], cfg.data.binarize).to(device)  # thresholded at 0.5
    return to_unit(x, cfg.data.binarize), to_unit(model.reconstruct(x), cfg.data.binarize)

