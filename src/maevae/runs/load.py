"""Making and opening run directories: one place for every entry point.

* :func:`new_run` — a new run directory for a config and its dataset (``config.yaml`` and
  ``run.json``), used by ``maevae train``, ``maevae run`` and the tests;
* :func:`load_run` — a trained run: its directory, config and best (EMA) model, as a
  :class:`Run`; :func:`load_run_config`, :func:`load_run_data` and
  :func:`load_trained_model` are its parts (``--resume`` needs the config and data only).

An existing run reads its data from the root recorded in its run.json unless ``--data-root``
overrides it (:func:`run_data_root`); runs written before roots were recorded fall back to
``$MAEVAE_DATA`` and the default cache as before.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from maevae.config import RunConfig, dump_yaml, from_dict
from maevae.data import ImageSplits, load_dataset, user_cache_dir
from maevae.data.provenance import changed_files, describe_files
from maevae.data.registry import loader_options
from maevae.device import resolve_device
from maevae.errors import CheckpointError, ConfigError
from maevae.models.build import build_model
from maevae.models.vae import VAE
from maevae.runs.directory import RunDir
from maevae.runs.facade import RunModel
from maevae.runs.validate import file_error

__all__ = [
    "Run",
    "load_run",
    "load_run_config",
    "load_run_data",
    "load_trained_model",
    "new_run",
    "run_meta",
]


def load_run_config(run: RunDir) -> RunConfig:
    """The :class:`~maevae.config.RunConfig` of a run, read from its ``config.yaml``
    through the safe YAML loader; a bad file raises one :class:`~maevae.errors.ConfigError`
    line."""
    import yaml

    from maevae import safe_yaml

    run.meta()
    text = run.config_yaml()  # UTF-8 checked
    try:
        raw = safe_yaml.loads(text, f"{run.path / 'config.yaml'}")
        if not isinstance(raw, dict):
            raise file_error("config.yaml", run.path, "must be a mapping of config sections "
                             f"(got {'null' if raw is None else type(raw).__name__}); restore "
                             "the run's config.yaml")
        return from_dict(raw)
    except ConfigError as e:
        raise ConfigError(f"{run.path / 'config.yaml'}: {e}") from None
    except yaml.YAMLError:  # also python/object tags, which safe_load refuses
        raise ConfigError(f"{run.path / 'config.yaml'} is not valid YAML (or holds tags that "
                          "are not plain data); restore the run's config.yaml") from None


_WARNED: set[str] = set()  # lines already printed by this process (eval --probes loads twice)


def _warn(msg: str) -> None:
    if msg not in _WARNED:
        _WARNED.add(msg)
        print(f"maevae: warning: {msg}", file=sys.stderr)


def run_data_root(run: RunDir, data_root: str | None) -> str | None:
    """The data root for an existing run: ``data_root`` (``--data-root``) when given, else the
    root recorded in its run.json, else None (``$MAEVAE_DATA``, then the default cache: runs
    written before roots were recorded, and a recorded default cache that was deleted: it is
    made and downloaded into again). CheckpointError when another recorded root is gone."""
    if data_root is not None and str(data_root).strip():
        return data_root
    recorded = run.meta().get("data_root")
    if recorded is None or (not Path(recorded).is_dir() and Path(recorded) == user_cache_dir()):
        return None
    if not Path(recorded).is_dir():
        raise CheckpointError(f"the data root {recorded} recorded in {run.path / 'run.json'} "
                              "no longer exists; pass --data-root DIR with the run's dataset")
    return recorded


def load_run_data(cfg: RunConfig, data_root: str | None, run: RunDir | None = None,
                  warn: Callable[[str], None] | None = None) -> ImageSplits:
    """The run's dataset: :class:`~maevae.config.DataConfig` -> ``load_dataset`` options
    (:func:`maevae.data.registry.loader_options`).

    Folder datasets are read as grey when the run binarises (the binary PixelCNN) and as RGB
    otherwise (the PixelCNN++ colour model; grey images are replicated to three channels).

    With ``run`` (an existing run) the root is :func:`run_data_root`, and each data file that
    differs from the one recorded in its run.json gives one ``warn`` line (default: stderr).
    """
    d = cfg.data
    opts = loader_options(d)
    if run is not None:
        data_root = run_data_root(run, data_root)
    data = load_dataset(d.name, data_root, split=d.split, seed=cfg.seed, n_val=d.n_val, **opts)
    data.require_nonempty()  # training and evaluation need every split
    recorded = run.meta().get("data_files") if run is not None else None
    if recorded:
        where = f" under {data.root}" if data.root is not None else ""
        for line in changed_files(recorded, describe_files(data)):
            (warn or _warn)(f"{line}{where}: it is not the data {run.path} was trained on, "
                            "so results may differ from the run's")
    return data


def load_trained_model(run: RunDir, cfg: RunConfig, device: torch.device) -> tuple[VAE, dict]:
    """The run's best (EMA) model on ``device`` in eval mode, and ``best/meta.json``;
    weights that do not fit ``cfg`` raise one :class:`~maevae.errors.ConfigError` line."""
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


def run_meta(data: ImageSplits) -> dict:
    """The ``run.json`` fields that describe the data a run is trained on."""
    meta = {"image_shape": list(data.image_shape), "dataset": data.name,
            "data_notes": data.notes, "sizes": list(data.sizes()),
            "labelled": data.train_y is not None and data.test_y is not None}
    if data.root is not None:
        meta["data_root"] = str(data.root.absolute())
    meta["data_files"] = describe_files(data)  # paths relative to data_root, sha256, sizes
    return meta


def new_run(run: RunDir | str | Path, cfg: RunConfig, data: ImageSplits) -> RunDir:
    """Create the run directory for ``cfg`` trained on ``data`` (``config.yaml`` holding the
    resolved config, ``run.json``); refuses a folder that holds another run."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    run.create(dump_yaml(cfg), run_meta(data))
    return run


@dataclass
class Run(RunModel):
    """A trained run, opened: its directory, its config and its best (EMA) model, in eval
    mode on the device it was loaded to. ``best`` is ``best/meta.json`` (epoch, step,
    validation statistics, the weights' sha256).

    Its model methods (:meth:`encode`, :meth:`posterior`, :meth:`log_likelihood`,
    :meth:`sample`, :meth:`reconstruct`) take and give uint8 images ``[N, C, H, W]``; see
    :mod:`maevae.runs.facade` for the convention (binary models threshold at 0.5)."""

    dir: RunDir
    config: RunConfig
    model: VAE
    best: dict

    @property
    def path(self) -> Path:
        """The run directory."""
        return self.dir.path

    def load_data(self, data_root: str | None = None) -> ImageSplits:
        """The run's dataset (see :func:`load_run_data`)."""
        return load_run_data(self.config, data_root, self.dir)


def load_run(path: str | Path, device: torch.device | str | None = None) -> Run:
    """Open the trained run in ``path`` (a folder made by ``maevae train --out``) as a
    :class:`Run` with its best (EMA) model in eval mode on ``device`` (``"auto"`` when None:
    CUDA if available; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``). A missing
    or damaged run, or an unknown device, raises one :class:`~maevae.errors.MaevaeError`
    line."""
    run = RunDir(path)
    cfg = load_run_config(run)
    device = resolve_device("auto" if device is None else str(device))  # "gpu": one line
    model, best = load_trained_model(run, cfg, device)
    return Run(run, cfg, model, best)
