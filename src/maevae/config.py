"""Typed configuration: one dataclass per component, defaults = the authors' binary MNIST model.

Presets in ``maevae/presets/`` (package data) are YAML files holding only what differs
from these defaults.
Loading validates everything: unknown keys, wrong types and out-of-range values raise a
one-line :class:`~maevae.errors.ConfigError` that names the key and what is allowed.
The fully resolved config is saved as ``config.yaml`` in every run directory.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import reprlib
import types
import typing
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

import yaml

from maevae import safe_yaml
from maevae.data import registry as _datasets
from maevae.errors import ConfigError

__all__ = [
    "DataConfig",
    "DatasetName",
    "DecoderConfig",
    "EncoderConfig",
    "EvalConfig",
    "MAX_SEED",
    "ModelConfig",
    "ObjectiveConfig",
    "PriorConfig",
    "RunConfig",
    "SplitName",
    "TrainConfig",
    "apply_overrides",
    "dump_yaml",
    "from_dict",
    "list_presets",
    "load_config",
    "parse_override",
    "parse_yaml",
    "preset_text",
    "read_config_source",
    "read_yaml",
    "to_dict",
    "validate",
]

# Allowed data.name / data.split values: built from the dataset registry (its one owner), so
# the Literal check gives "unknown value ...; allowed: ..." for them like any other enum.
DatasetName = Literal[tuple(_datasets.DATASETS)]  # type: ignore[valid-type]
SplitName = Literal[_datasets.all_splits()]  # type: ignore[valid-type]


@dataclass
class DataConfig:
    """The ``data`` section: which dataset and split, how images become model input
    (binarised or 8-bit) and how many fixed binarised copies the val / test sets use."""
    name: DatasetName = "mnist"  # maevae.data.registry.DATASETS
    split: SplitName = "mae"  # which ones apply: the dataset's DatasetSpec.splits
    n_val: int | None = None  # None: the split's own size
    test_copies: int = 5  # fixed seeded binarised copies for val/test; 0 = dynamic each pass
    binarize: bool = True  # False: 8-bit likelihood (colour data)
    image_size: list[int] | None = None  # [H, W] for folder datasets
    omniglot_fortran: bool = False  # IWAE's Fortran-order reshape of chardata.mat
    # folder only: the image folder (absolute, or relative to the data root; None = the data
    # root itself); binarize=true reads it as grey, false as RGB. Folder and zip-built
    # OMNIGLOT: the test fraction (None = 0.1 folder, 0.25 per OMNIGLOT character).
    path: str | None = None
    test_fraction: float | None = None
    # zip-built OMNIGLOT only: class labels (None = alphabet)
    label: Literal["alphabet", "character"] | None = None


@dataclass
class EncoderConfig:
    """The ``model.encoder`` section: its type, the latent size (channels for
    ``densenet``) and an optional clip of log-variances."""
    type: Literal["resnet", "densenet"] = "resnet"
    latent_dim: int = 32
    logvar_clip: float | None = None  # CIFAR: 7.0 (hardtanh to [-7, 7])
    # BN-VAE (Zhu et al., 2020): batch-normalise the posterior means with this fixed scale
    # gamma and a learned shift (None = off)
    bn_mu_scale: float | None = None


@dataclass
class DecoderConfig:
    """The ``model.decoder`` section: its type and, per type, its size (PixelCNN mode,
    channels, the z feature maps; PixelCNN++ mixture size and dropout)."""
    type: Literal["pixelcnn", "resnet", "pixelcnnpp"] = "pixelcnn"
    mode: Literal["small", "large", "paper_literal_6"] = "small"
    channels: int = 64
    z_maps: int = 4  # feature maps from z concatenated to the image
    nmix: int = 10  # pixelcnnpp only
    dropout: float = 0.5  # pixelcnnpp only


@dataclass
class PriorConfig:
    """The ``model.prior`` section: an autoregressive-flow prior (``af``: blocks, MADE
    hidden units, initial scale) or the standard normal."""
    type: Literal["af", "normal"] = "af"
    blocks: int = 4  # dual blocks (2 AF layers each)
    hidden: int = 320  # MADE hidden units (10 × latent_dim in the authors' code)
    init_scale: float = 0.1  # DDI scale of the flow


@dataclass
class ModelConfig:
    """The ``model`` section: encoder, decoder and prior (see :func:`maevae.build_model`)."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)


@dataclass
class ObjectiveConfig:
    """The ``objective`` section: the MAE weights ``eta`` (L_diverse) and ``gamma``
    (L_smooth), the form of L_diverse, free bits, the posterior samples per term, and the
    posterior-collapse remedies (KL weight and annealing, MMD; docs/remedies.md)."""
    eta: float = 0.0  # weight of L_diverse (0 = VLAE)
    gamma: float = 0.0  # weight of L_smooth
    div_form: Literal["code", "paper"] = "code"
    # nats (batch_total), nats per data dim (per_datadim) or per latent dim (per_dim)
    free_bits: float = 0.0
    free_bits_mode: Literal["off", "batch_total", "per_datadim", "per_dim"] = "off"
    kl_samples_train: int = 1
    kl_samples_eval: int = 5
    kl_weight: float = 1.0  # beta, the weight of the KL term in the training loss
    kl_anneal: Literal["off", "linear", "cyclical"] = "off"
    kl_anneal_steps: int = 0  # linear: warm-up steps; cyclical: the cycle length L
    kl_cycle_ratio: float = 0.5  # cyclical: R, the ramping share of each cycle
    kl_cycles: int | None = None  # cyclical: cycles before beta stays put (None = all run)
    mmd_weight: float = 0.0  # lambda of the InfoVAE MMD term (0 = off)
    mmd_kernel: Literal["imq", "rbf"] = "imq"
    mmd_bandwidth: float | None = None  # the kernel's C; None = 2 * latent dim
    mmd_estimator: Literal["unbiased", "biased"] = "unbiased"


@dataclass
class TrainConfig:
    """The ``train`` section: batch size, Adam, the learning-rate schedule and stopping
    rule, EMA, initialisation, logging and checkpointing."""
    batch_size: int = 100
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    adam_eps: float = 1e-8
    lr_decay: float = 0.999998  # per-iteration exponential decay
    lr_schedule: Literal["code", "constant"] = "code"
    patience: int = 20  # epochs without val-ELBO improvement before halving the LR
    max_decays: int = 3  # stop at this many halvings
    min_lr_ratio: float = 0.05  # stop when lr < lr0 × this
    max_epochs: int = 1000
    max_steps: int | None = None  # optional hard cap on optimizer steps
    grad_clip: float = 5.0  # total-norm clip; 0 disables
    ema_decay: float = 0.999
    ema_warmup: bool = False  # decay_t = min(decay, (1+t)/(10+t))
    ddi: bool = True
    init_batch: int = 500
    eval_batch: int = 512
    max_nonfinite: int = 50  # consecutive skipped steps before training stops
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints; 0 = end of epoch only
    keep_checkpoints: int = 3
    precision: Literal["fp32", "bf16"] = "fp32"
    log_every: int = 50
    num_threads: int = 0  # torch CPU threads; 0 = torch default
    # torch.compile of the PixelCNN core: auto = when the run is planned for >= 5000 steps
    compile: Literal["auto", "always", "never"] = "auto"
    # He et al. (2019) aggressive inference-network training (maevae.train.aggressive)
    aggressive: bool = False
    aggressive_max_inner: int = 100  # encoder-only steps per outer step, at most
    aggressive_check_every: int = 10  # inner steps per window of the stopping rule


@dataclass
class EvalConfig:
    """The ``eval`` section: importance samples K and their chunking, precision, an
    optional limit on test images, and when to ``torch.compile`` the decoder."""
    nll_samples: int = 4096
    nll_chunk: int = 128  # (image, sample) pairs per decoder pass: bounds memory
    precision: Literal["fp32", "bf16"] = "fp32"
    max_images: int | None = None  # evaluate the IS-NLL on the first N test images only
    # torch.compile of the PixelCNN core: auto = when the IS-NLL has >= 2^18 samples in all
    compile: Literal["auto", "always", "never"] = "auto"


@dataclass
class RunConfig:
    """A whole run's configuration: its name and seed and the sections above; what a
    preset, ``config.yaml`` and :func:`load_config` hold."""
    name: str = "run"
    seed: int = 524287
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# Seeds are combined arithmetically (seed * 7919 + offset, seed + 99) before they reach
# torch.Generator.manual_seed (at most 2^64 - 1) and numpy: 32 bits keep every use in range.
MAX_SEED = 2**32 - 1
# Every integer must fit a torch int64 (larger ones overflow inside torch with a traceback).
_INT64 = 2**63


def _short(value: Any) -> str:
    """A bounded repr for messages (never the repr of a whole huge value)."""
    return _REPR.repr(value)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 6, 6, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 60, 40


class _NonFinite(ConfigError):
    """A non-finite number: reported as such even inside a union (``float | None``)."""


# ---------------------------------------------------------------------------------------
# Range checks: (dotted key, predicate, what is allowed)
_CHECKS: list[tuple[str, typing.Callable[[Any], bool], str]] = [
    ("seed", lambda v: 0 <= v <= MAX_SEED, f"an integer in [0, {MAX_SEED}] (2^32 - 1)"),
    ("data.n_val", lambda v: v is None or v >= 1, "an integer >= 1 or null"),
    ("data.test_copies", lambda v: v >= 0, "an integer >= 0 (0 = dynamic binarisation)"),
    ("data.image_size", lambda v: v is None or (len(v) == 2 and all(s >= 1 for s in v)),
     "null or [H, W] with positive integers"),
    ("data.test_fraction", lambda v: v is None or 0 < v < 1, "null or a number in (0, 1)"),
    ("model.encoder.latent_dim", lambda v: v >= 1, "an integer >= 1"),
    ("model.encoder.logvar_clip", lambda v: v is None or v > 0, "null or a number > 0"),
    ("model.encoder.bn_mu_scale", lambda v: v is None or v > 0,
     "null (off) or a number > 0 (BN-VAE's gamma, e.g. 0.6)"),
    ("model.decoder.channels", lambda v: v >= 2 and v % 2 == 0, "an even integer >= 2"),
    ("model.decoder.z_maps", lambda v: v >= 1, "an integer >= 1"),
    ("model.decoder.nmix", lambda v: v >= 1, "an integer >= 1"),
    ("model.decoder.dropout", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("model.prior.blocks", lambda v: 1 <= v <= 1024, "an integer in [1, 1024]"),
    ("model.prior.hidden", lambda v: v >= 1, "an integer >= 1"),
    ("model.prior.init_scale", lambda v: v > 0, "a number > 0"),
    ("objective.eta", lambda v: v >= 0, "a number >= 0"),
    ("objective.gamma", lambda v: v >= 0, "a number >= 0"),
    ("objective.free_bits", lambda v: v >= 0, "a number >= 0"),
    ("objective.kl_samples_train", lambda v: v >= 1, "an integer >= 1"),
    ("objective.kl_samples_eval", lambda v: v >= 1, "an integer >= 1"),
    ("objective.kl_weight", lambda v: v >= 0, "a number >= 0 (1 = the ELBO's weight)"),
    ("objective.kl_anneal_steps", lambda v: v >= 0, "an integer >= 0"),
    ("objective.kl_cycle_ratio", lambda v: 0 < v <= 1, "a number in (0, 1]"),
    ("objective.kl_cycles", lambda v: v is None or v >= 1, "null or an integer >= 1"),
    ("objective.mmd_weight", lambda v: v >= 0, "a number >= 0 (0 = off)"),
    ("objective.mmd_bandwidth", lambda v: v is None or v > 0,
     "null (2 x latent dim) or a number > 0"),
    ("train.batch_size", lambda v: v >= 1, "an integer >= 1"),
    ("train.lr", lambda v: v > 0, "a number > 0"),
    ("train.betas", lambda v: len(v) == 2 and all(0 <= b < 1 for b in v),
     "two numbers in [0, 1), e.g. [0.9, 0.999]"),
    ("train.adam_eps", lambda v: v > 0, "a number > 0"),
    ("train.lr_decay", lambda v: 0 < v <= 1, "a number in (0, 1]"),
    ("train.patience", lambda v: v >= 0, "an integer >= 0"),
    ("train.max_decays", lambda v: v >= 1, "an integer >= 1"),
    ("train.min_lr_ratio", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("train.max_epochs", lambda v: v >= 1, "an integer >= 1"),
    ("train.max_steps", lambda v: v is None or v >= 1, "null or an integer >= 1"),
    ("train.grad_clip", lambda v: v >= 0, "a number >= 0 (0 disables clipping)"),
    ("train.ema_decay", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("train.init_batch", lambda v: v >= 2, "an integer >= 2"),
    ("train.eval_batch", lambda v: v >= 2, "an integer >= 2"),
    ("train.max_nonfinite", lambda v: v >= 1, "an integer >= 1"),
    ("train.checkpoint_every", lambda v: v >= 0, "an integer >= 0"),
    ("train.keep_checkpoints", lambda v: v >= 1, "an integer >= 1"),
    ("train.log_every", lambda v: v >= 1, "an integer >= 1"),
    ("train.num_threads", lambda v: 0 <= v <= 4096, "an integer in [0, 4096]"),
    ("train.aggressive_max_inner", lambda v: v >= 1, "an integer >= 1"),
    ("train.aggressive_check_every", lambda v: v >= 1, "an integer >= 1"),
    ("eval.nll_samples", lambda v: v >= 1, "an integer >= 1 (importance samples K)"),
    ("eval.nll_chunk", lambda v: v >= 1, "an integer >= 1"),
    ("eval.max_images", lambda v: v is None or v >= 1, "null or an integer >= 1"),
]


def _cross_checks(cfg: RunConfig) -> None:
    o, t = cfg.objective, cfg.train
    if (o.eta > 0 or o.gamma > 0) and t.batch_size < 2:
        raise ConfigError(f"train.batch_size={t.batch_size} but the MAE regularizer needs pairs "
                          "of posteriors: use train.batch_size >= 2 (the paper uses 100)")
    if o.gamma > 0 and t.batch_size < 3:
        raise ConfigError("train.batch_size must be >= 3 for the smoothness term (gamma > 0): "
                          "its unbiased std needs at least two distinct pairs")
    if o.free_bits_mode != "off" and o.free_bits == 0:
        raise ConfigError(f"objective.free_bits_mode={o.free_bits_mode!r} needs "
                          "objective.free_bits > 0 (or set free_bits_mode: off)")
    if o.free_bits_mode == "per_dim" and cfg.model.prior.type != "normal":
        raise ConfigError("objective.free_bits_mode=per_dim needs model.prior.type=normal (the "
                          "flow prior's KL does not split by latent dimension): set "
                          "model.prior.type=normal")
    if o.kl_anneal != "off" and o.kl_anneal_steps < 1:
        what = "warm-up steps" if o.kl_anneal == "linear" else "steps per cycle"
        raise ConfigError(f"objective.kl_anneal={o.kl_anneal!r} needs objective.kl_anneal_steps "
                          f">= 1 ({what}), or set kl_anneal: off")
    if o.mmd_weight > 0 and t.batch_size < 2:
        raise ConfigError(f"train.batch_size={t.batch_size} but the MMD term (mmd_weight > 0) "
                          "compares batches of codes: use train.batch_size >= 2")
    if cfg.model.encoder.bn_mu_scale is not None and t.batch_size < 2:
        raise ConfigError(f"train.batch_size={t.batch_size} but model.encoder.bn_mu_scale "
                          "batch-normalises the means: use train.batch_size >= 2")
    if cfg.model.decoder.type == "pixelcnnpp" and cfg.data.binarize:
        raise ConfigError("model.decoder.type=pixelcnnpp models 8-bit colour: set "
                          "data.binarize=false")
    if t.aggressive_check_every > t.aggressive_max_inner:
        raise ConfigError(f"train.aggressive_check_every={t.aggressive_check_every} must be <= "
                          f"train.aggressive_max_inner={t.aggressive_max_inner}")
    _data_checks(cfg.data)


def _data_checks(d: DataConfig) -> None:
    """Options that only apply to some datasets: one-line errors instead of silent no-ops."""
    splits = _datasets.DATASETS[d.name].splits
    if d.split not in splits:
        raise ConfigError(f"data.split={d.split!r} does not apply to data.name={d.name!r}; "
                          f"allowed: {', '.join(splits)}")
    for key in _datasets.scoped_fields():
        message = _datasets.scoped_field_error(key, getattr(d, key), d.name)
        if message is not None:
            raise ConfigError(message)


# ---------------------------------------------------------------------------------------
def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int -> float)."""
    origin = typing.get_origin(tp)
    got = "null" if value is None else f"{_short(value)} ({type(value).__name__})"
    bad = ConfigError(f"{key}: got {got}; expected {_type_name(tp)}")
    if origin is Literal:
        if isinstance(value, (dict, list)) or value not in typing.get_args(tp):
            raise ConfigError(f"{key}: unknown value {_short(value)}; allowed: "
                              + ", ".join(repr(a) for a in typing.get_args(tp)))
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise bad
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except _NonFinite:
                raise
            except ConfigError:
                continue
        raise bad
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        (inner,) = typing.get_args(tp)
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise bad
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                raise bad from None
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        else:
            try:
                number = float(value)
            except OverflowError:  # an integer beyond 1.8e308
                number = math.inf
        if not math.isfinite(number):
            shown = value[:40] if isinstance(value, str) else _short(value)
            raise _NonFinite(f"{key}={shown} is not a finite number; give a finite "
                             f"value ({_type_name(tp)})")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise bad  # pragma: no cover


def _build(cls, data: dict | None, prefix: str, present: bool = False):
    """``present``: the section was given explicitly (``train:`` / ``--set train=``), so it
    must be a mapping; null would silently reset the whole section to the defaults."""
    if data is None and not present:
        data = {}
    if not isinstance(data, dict):
        got = "null" if data is None else _short(data)
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of keys, got {got}"
                          + (f" (set keys inside it, e.g. {prefix}.KEY=VALUE)" if prefix else ""))
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise ConfigError(f"{prefix or 'config'}: key {_short(bad_keys[0])} is not a string")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown config key {where}{unknown[0]}; allowed keys here: "
                          + ", ".join(sorted(fields)))
    kwargs = {}
    for name in fields:
        key = f"{prefix}.{name}" if prefix else name
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, data.get(name), key, present=name in data)
        elif name in data:
            kwargs[name] = _coerce(data[name], tp, key)
    return cls(**kwargs)


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _int64_checks(node: Any, prefix: str) -> None:
    """Every integer must fit a torch int64 (a larger one overflows inside torch)."""
    for f in dataclasses.fields(node):
        key, value = f"{prefix}{f.name}", getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            _int64_checks(value, key + ".")
            continue
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, int) and not -_INT64 < v < _INT64:
                raise ConfigError(f"{key}={_short(value)} is out of range; allowed: an integer "
                                  "that fits in 64 bits (|n| < 2^63)")


def validate(cfg: RunConfig) -> RunConfig:
    """Check every range and cross-field rule of ``cfg``; return it, or raise one
    :class:`~maevae.errors.ConfigError` line naming the key and what is allowed."""
    for key, ok, allowed in _CHECKS:
        value = _get(cfg, key)
        if not ok(value):
            raise ConfigError(f"{key}={_short(value)} is out of range; allowed: {allowed}")
    _int64_checks(cfg, "")
    _cross_checks(cfg)
    return cfg


def from_dict(data: dict) -> RunConfig:
    """A validated :class:`RunConfig` from nested plain data (a YAML mapping); unknown keys
    and bad values raise :class:`~maevae.errors.ConfigError`."""
    return validate(_build(RunConfig, data, ""))


def to_dict(cfg: RunConfig) -> dict:
    """``cfg`` as nested plain data (dicts, lists, numbers, strings), the inverse of
    :func:`from_dict`."""
    return dataclasses.asdict(cfg)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_override(text: str) -> dict:
    """``"train.lr=3e-4"`` -> ``{"train": {"lr": 0.0003}}`` (the value is parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. --set train.max_epochs=1")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"--set {text!r}: expected a dotted key such as train.lr")
    try:
        value = safe_yaml.loads(raw, f"--set {key}") if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
        else:  # "3e-4" -> 0.0003; "inf" stays a string, refused by a float key by name
            if math.isfinite(number):
                value = number
    out: dict = {}
    node = out
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


# ---------------------------------------------------------------------------------------
def _presets_root() -> Traversable:
    """The ``presets/`` folder of package data, through :mod:`importlib.resources` (the same
    from a source checkout, an editable install or an installed wheel)."""
    return importlib.resources.files("maevae") / "presets"


def list_presets() -> list[str]:
    """Every preset name (``<dataset>/<name>``, e.g. ``mnist/vlae``), sorted."""
    names: list[str] = []

    def walk(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".yaml"):
                names.append(prefix + child.name.removesuffix(".yaml"))

    walk(_presets_root(), "")
    return sorted(names)


def preset_text(name: str) -> str:
    """The YAML text of the preset ``name`` (one of :func:`list_presets`)."""
    node = _presets_root()
    *folders, leaf = name.split("/")
    for part in folders:
        node = node / part
    return (node / f"{leaf}.yaml").read_text(encoding="utf-8")


def read_yaml(path: Path) -> dict:
    """A config file, read as untrusted input (:mod:`maevae.safe_yaml`)."""
    text = safe_yaml.decode_utf8(safe_yaml.read_bytes_limited(path), f"config {path}")
    return parse_yaml(text, f"config {path}")


def parse_yaml(text: str, where: str) -> dict:
    """The mapping in config text ``text``; ``where`` names it in the one-line errors."""
    try:
        data = safe_yaml.loads(text, where)
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        at = f" at line {line + 1}" if line is not None else ""
        raise ConfigError(f"{where} is not valid YAML{at}: fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of keys (got {type(data).__name__})")
    return data


def read_config_source(name_or_path: str) -> dict:
    """The keys of an existing YAML file ``name_or_path``, else of the preset of that name
    (``mnist/vlae`` or ``mnist/vlae.yaml``)."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return read_yaml(p)
    names = list_presets()
    name = name_or_path.removesuffix(".yaml")
    if name in names:  # only listed names: never a path outside the presets folder
        return parse_yaml(preset_text(name), f"preset {name}")
    if p.suffix in (".yaml", ".yml"):
        raise ConfigError(f"config file {name_or_path} does not exist")
    close = [n for n in names if name_or_path.split("/")[-1] in n][:5] or names[:8]
    raise ConfigError(f"unknown preset {name_or_path!r}; try one of: {', '.join(close)} "
                      "(`maevae info --list` shows all)")


def load_config(name_or_path: str, overrides: list[str] | None = None) -> RunConfig:
    """Load a preset name (``mnist/vlae``) or YAML path, apply ``key=value`` overrides."""
    data = read_config_source(name_or_path)
    for text in overrides or []:
        data = _merge(data, parse_override(text))
    data.setdefault("name", name_or_path.removesuffix(".yaml").replace("/", "_"))
    return from_dict(data)


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """``cfg`` with ``key=value`` overrides applied (``train.lr=3e-4``), validated again."""
    data = to_dict(cfg)
    for text in overrides:
        data = _merge(data, parse_override(text))
    return from_dict(data)


def dump_yaml(cfg: RunConfig) -> str:
    """``cfg`` as YAML text, sections in their declared order (a run's ``config.yaml``)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
