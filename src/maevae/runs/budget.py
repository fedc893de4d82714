"""Memory estimates made before anything big is allocated (or any run directory created).

A config can ask for more memory than any machine has (``model.decoder.channels=2097152``,
``data.test_copies=1000000000``, ``maevae sample -n 1000000000``); without these checks the
allocator fails with a traceback, possibly after the run directory was made, or the machine
swaps. Each estimate is a LOWER bound of what the step needs, compared with the device's
total memory: a refusal means "cannot fit", never "might be tight".

* the model: built on torch's ``meta`` device (shapes only, nothing allocated), parameters
  and buffers counted; training holds 5 float32 copies of each parameter (weights, gradient,
  two Adam moments, EMA) and 2 of each buffer;
* the fixed evaluation copies: ``data.test_copies`` × the larger of the validation and test
  sets × image size, as uint8 and float32;
* one training step's activations: ``train.batch_size`` × ``objective.kl_samples_train`` ×
  image size × decoder channels, float32, kept for the backward pass (×2);
* a sample batch: ``-n`` × image size × decoder channels, float32.
"""

from __future__ import annotations

import copy
import math
import os

import torch

from maevae.config import ModelConfig, RunConfig
from maevae.errors import ConfigError, MaevaeError
from maevae.models.build import build_model

__all__ = [
    "F32",
    "GIB",
    "MODEL_KEYS",
    "Shape",
    "check_copies",
    "check_eval",
    "check_model",
    "check_model_early",
    "check_sample",
    "check_train",
    "device_memory",
    "model_bytes",
    "model_numel",
    "sample_budget",
]

Shape = tuple[int, int, int]
GIB = 1024**3
F32 = 4
# model size keys, checked in this order to name the one that makes a model too large
MODEL_KEYS = ("encoder.latent_dim", "decoder.channels", "decoder.z_maps", "decoder.nmix",
              "prior.blocks", "prior.hidden")


def device_memory(device: torch.device | str) -> int:
    """Total memory of ``device`` in bytes (host RAM for the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 1 << 62


def _gib(n: float) -> str:
    if not math.isfinite(n):
        return "more than 2^63 elements"
    g = n / GIB
    return f"~{g:.3g} GiB" if g < 1e6 else f"~{g:.2e} GiB"


def model_numel(model: ModelConfig, shape: Shape) -> tuple[float, float]:
    """(parameters, buffer elements) of the model, counted on the meta device; inf when a
    tensor's size does not even fit in 64 bits."""
    try:
        with torch.device("meta"):
            net = build_model(model, shape)
    except (RuntimeError, OverflowError):  # "numel: integer multiplication overflow"
        return math.inf, math.inf
    return (float(sum(p.numel() for p in net.parameters())),
            float(sum(b.numel() for b in net.buffers())))


def model_bytes(model: ModelConfig, shape: Shape) -> tuple[float, float]:
    """(bytes of the float32 parameters, bytes to train: weights, grads, Adam, EMA, buffers)."""
    params, buffers = model_numel(model, shape)
    return params * F32, (5 * params + 2 * buffers) * F32


def _width(model: ModelConfig) -> int:
    """Feature maps per pixel the decoder keeps (a lower bound of its activations)."""
    return model.decoder.channels if model.decoder.type == "pixelcnn" else 64


def _culprit(model: ModelConfig, shape: Shape, need: float) -> str:
    """The model key whose reduction to its default shrinks the estimate the most."""
    defaults = ModelConfig()
    best, best_need = None, need
    for key in MODEL_KEYS:
        section, name = key.split(".")
        value = getattr(getattr(model, section), name)
        default = getattr(getattr(defaults, section), name)
        if value <= default:
            continue
        trial = copy.deepcopy(model)
        setattr(getattr(trial, section), name, default)
        try:
            trial_need = model_bytes(trial, shape)[1]
        except ConfigError:
            continue
        if trial_need < best_need:
            best, best_need = f"model.{key}={value}", trial_need
    return best or "the model"


def check_model(cfg: RunConfig, shape: Shape, memory: int) -> None:
    """Refuse, with one :class:`~maevae.errors.ConfigError` line, a model whose training
    state (weights, gradients, Adam, EMA) for ``shape`` images exceeds ``memory`` bytes."""
    weights, need = model_bytes(cfg.model, shape)
    if need > memory:
        who = _culprit(cfg.model, shape, need)
        if who == "the model" and cfg.data.image_size is not None:
            who = f"data.image_size={cfg.data.image_size}: the model"
        size = (f"needs {_gib(weights)} for parameters ({_gib(need)} to train with gradients, "
                "Adam and EMA)" if math.isfinite(need) else
                "makes tensors of more than 2^63 elements")
        raise ConfigError(f"{who} {size} for {shape[0]}x{shape[1]}x{shape[2]} images; this "
                          f"machine has {_gib(memory)}: make the model smaller")


def check_model_early(cfg: RunConfig, device: torch.device) -> None:
    """:func:`check_model` before the data is loaded, when the image shape is known from the
    dataset's name alone (not for folder datasets without ``data.image_size``)."""
    from maevae.data.registry import image_shape

    shape = image_shape(cfg.data.name, cfg.data.binarize, cfg.data.image_size)
    if shape is not None:
        check_model(cfg, shape, device_memory(device))


def _refuse_over(need: float, memory: int, error: type[MaevaeError], what: str,
                 unit: str = "", fix: str = "") -> None:
    """Raise ``error`` ("WHAT X GiB UNIT; this machine has Y GiB FIX") when need > memory."""
    if need > memory:
        raise error(f"{what} {_gib(need)}{unit}; this machine has {_gib(memory)}{fix}")


def check_train(cfg: RunConfig, shape: Shape, n_eval_images: int, device: torch.device,
                memory: int | None = None) -> None:
    """Refuse a training config that cannot fit in ``device``'s memory (before allocating)."""
    memory = device_memory(device) if memory is None else memory
    check_eval(cfg, shape, n_eval_images, device, memory)
    pixels = math.prod(shape)
    t, o = cfg.train, cfg.objective
    rows = float(t.batch_size) * o.kl_samples_train
    need = rows * pixels * _width(cfg.model) * F32 * 2 + rows * cfg.model.encoder.latent_dim * F32
    _refuse_over(need, memory, ConfigError,
                 f"objective.kl_samples_train={o.kl_samples_train} with train.batch_size="
                 f"{t.batch_size}: one training step needs at least", " of activations")


def check_eval(cfg: RunConfig, shape: Shape, n_eval_images: int, device: torch.device,
               memory: int | None = None) -> None:
    """Refuse a model or evaluation copies (``data.test_copies``) that cannot fit."""
    memory = device_memory(device) if memory is None else memory
    check_model(cfg, shape, memory)
    check_copies(cfg, shape, n_eval_images, memory)


def check_copies(cfg: RunConfig, shape: Shape, n_eval_images: int, memory: int) -> None:
    """Refuse fixed evaluation copies (``data.test_copies``) that cannot fit."""
    d = cfg.data
    if d.binarize and d.test_copies:
        need = float(d.test_copies) * n_eval_images * math.prod(shape) * (1 + F32)
        _refuse_over(need, memory, ConfigError,
                     f"data.test_copies={d.test_copies}: the fixed evaluation copies of "
                     f"{n_eval_images} images need", "",
                     ": use a few copies (5 is the paper's) or 0")


def check_sample(cfg: RunConfig, shape: Shape, n: int, device: torch.device,
                 memory: int | None = None) -> None:
    """Refuse ``maevae sample -n N`` when N images cannot be decoded at once."""
    memory = device_memory(device) if memory is None else memory
    need = float(n) * math.prod(shape) * (_width(cfg.model) + 1) * F32
    _refuse_over(need, memory, MaevaeError, f"-n {n}: sampling {n} images needs at least",
                 "", ": draw fewer")


def sample_budget(run_dir, n: int, device: torch.device) -> None:
    """:func:`check_sample` for a run directory (its config and image shape, no weights)."""
    from maevae.runs.directory import RunDir
    from maevae.runs.load import load_run_config

    run = RunDir(run_dir)
    cfg = load_run_config(run)
    check_sample(cfg, tuple(run.meta()["image_shape"]), n, device)

