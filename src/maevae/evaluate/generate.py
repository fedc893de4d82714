"""Images from a trained run: samples from the prior and reconstructions of test images."""

from __future__ import annotations

from pathlib import Path

import torch

from maevae.config import RunConfig
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
    return _to_unit(x, cfg)


@torch.no_grad()
def reconstruct_images(run_dir: str | Path, data_root: str | None, device: torch.device,
                       n: int) -> tuple[torch.Tensor, torch.Tensor]:
    run = RunDir(run_dir)
    cfg = load_run_config(run)
    model, _ = load_trained_model(run, cfg, device)
    data = load_run_data(cfg, data_root)
    x_u8 = torch.from_numpy(data.test_x[:n]).to(device)
    if cfg.data.binarize:
        x = (x_u8.float() / 255.0 > 0.5).float()  # thresholded, as the authors' figures
    else:
        x = x_u8.float() / 127.5 - 1.0
    return _to_unit(x, cfg), _to_unit(model.reconstruct(x), cfg)


def _to_unit(x: torch.Tensor, cfg: RunConfig) -> torch.Tensor:
    x = x.float().cpu()
    return x if cfg.data.binarize else (x + 1) / 2
