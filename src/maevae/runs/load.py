"""Opening a run directory: its config, its dataset and its trained (best EMA) model.

Shared by training (``--resume``), evaluation, sampling and the comparison reports.
"""

from __future__ import annotations

import torch

from maevae.config import RunConfig, from_dict
from maevae.data import ImageSplits, load_dataset
from maevae.errors import ConfigError
from maevae.models.vae import VAE, build_model
from maevae.runs.directory import RunDir


def load_run_config(run: RunDir) -> RunConfig:
    import yaml

    run.meta()
    try:
        return from_dict(yaml.safe_load(run.config_yaml()))
    except ConfigError as e:
        raise ConfigError(f"{run.path / 'config.yaml'}: {e}") from None
    except yaml.YAMLError:  # also python/object tags, which safe_load refuses
        raise ConfigError(f"{run.path / 'config.yaml'} is not valid YAML (or holds tags that "
                          "are not plain data); restore the run's config.yaml") from None


def load_run_data(cfg: RunConfig, data_root: str | None) -> ImageSplits:
    """The run's dataset: maps :class:`~maevae.config.DataConfig` to ``load_dataset`` options.

    Folder datasets are read as grey when the run binarises (the binary PixelCNN) and as RGB
    otherwise (the PixelCNN++ colour model; grey images are replicated to three channels).
    """
    d = cfg.data
    opts: dict = {}
    if d.name in ("omniglot", "omniglot_mat"):
        opts["fortran"] = d.omniglot_fortran
    if d.name == "omniglot":
        if d.label is not None:
            opts["label"] = d.label
        if d.test_fraction is not None:
            opts["test_fraction"] = d.test_fraction
    if d.name == "folder":
        opts["channels"] = 1 if d.binarize else 3
        if d.path is not None:
            opts["path"] = d.path
        if d.image_size is not None:
            opts["image_size"] = tuple(d.image_size)
        if d.test_fraction is not None:
            opts["test_fraction"] = d.test_fraction
    return load_dataset(d.name, data_root, split=d.split, seed=cfg.seed, n_val=d.n_val, **opts)


def load_trained_model(run: RunDir, cfg: RunConfig, device: torch.device) -> tuple[VAE, dict]:
    meta = run.meta()
    tensors, best = run.load_best()
    model = build_model(cfg.model, tuple(meta["image_shape"])).to(device)
    try:
        model.load_state_dict(tensors)
    except RuntimeError:
        raise ConfigError(f"the model in {run.best_dir} does not match {run.path}/config.yaml; "
                          "restore the original config.yaml") from None
    model.eval()
    return model, best
