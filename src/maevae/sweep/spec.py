"""The sweep file (``SWEEP.yaml``): validated, and expanded into its runs.

Runs = variants × grid points × seeds, in that nesting order (file order of variants, grid
keys and values). A run's config = its variant's preset + the variant's ``set`` + the grid
point + the command line's ``--set`` + ``seed``. Every mistake is one
:class:`~maevae.errors.ConfigError` line naming the file, the key and what is allowed.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maevae.config import MAX_SEED, RunConfig, load_config, read_yaml
from maevae.errors import ConfigError, MaevaeError

__all__ = ["EVAL_KEYS", "LATENTS", "RunSpec", "SweepEval", "SweepSpec", "load_sweep",
           "point_label", "run_id_for"]

TOP_KEYS = ("name", "seeds", "variants", "grid", "eval")
VARIANT_KEYS = ("preset", "set")
EVAL_KEYS = ("nll_samples", "max_images", "probes", "probe_runs", "labels", "latent",
             "figures")
LATENTS = ("mu", "mean50", "sample")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]*(?:_[A-Za-z0-9.+-]+)*")
_KEY = re.compile(r"[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*")
_UNSAFE = re.compile(r"[^A-Za-z0-9.+-]")


@dataclass(frozen=True)
class SweepEval:
    """How every run is evaluated (``eval:`` of the sweep file)."""

    nll_samples: int | None = None  # None: the run's eval.nll_samples
    max_images: int | None = None  # None: the run's eval.max_images
    probes: bool = False
    probe_runs: int = 5
    labels: str | None = None  # None: maevae eval's default budgets
    latent: str = "mu"
    figures: bool = False

    def eval_args(self) -> list[str]:
        """The ``maevae eval`` options these settings give."""
        args = []
        if self.nll_samples is not None:
            args += ["--nll-samples", str(self.nll_samples)]
        if self.max_images is not None:
            args += ["--max-images", str(self.max_images)]
        if self.probes:
            args += ["--probes", "--runs", str(self.probe_runs), "--latent", self.latent]
            if self.labels is not None:
                args += ["--labels", self.labels]
            if not self.figures:
                args.append("--no-figures")
        return args


@dataclass(frozen=True)
class RunSpec:
    """One run of the sweep: its id (= folder name), where it comes from and its config."""

    index: int
    run_id: str
    variant: str
    point: tuple[tuple[str, Any], ...]  # the grid point: (key, value) in grid order
    seed: int
    config: RunConfig = field(compare=False, repr=False)

    @property
    def group(self) -> tuple[str, tuple]:
        """The table row this run belongs to (variant, grid point)."""
        return self.variant, self.point


@dataclass
class SweepSpec:
    """A validated sweep file and its expanded runs."""

    path: Path
    name: str
    seeds: list[int]
    variants: dict[str, dict]
    grid: dict[str, list]
    eval: SweepEval
    runs: list[RunSpec]


def _err(path: Path, where: str, msg: str) -> ConfigError:
    return ConfigError(f"sweep file {path}: {where}: {msg}")


def _short(v: Any) -> str:
    try:
        s = json.dumps(v)
    except (TypeError, ValueError):
        s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _check_keys(path: Path, where: str, raw: dict, allowed: tuple[str, ...]) -> None:
    for k in raw:
        if k not in allowed:
            raise _err(path, where, f"unknown key {str(k)[:40]!r}; allowed: "
                                    f"{', '.join(allowed)}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _seeds(path: Path, raw: Any, where: str = "seeds") -> list[int]:
    if _is_int(raw):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise _err(path, where, f"{_short(raw)}: give a non-empty list of integer seeds, "
                                "e.g. [1, 2, 3]")
    for s in raw:
        if not _is_int(s) or not 0 <= s <= MAX_SEED:
            raise _err(path, where, f"seed {_short(s)}: use integers in [0, {MAX_SEED}]")
    if len(set(raw)) != len(raw):
        raise _err(path, where, f"{_short(raw)} repeats a seed; give each seed once")
    return list(raw)


def _overrides(path: Path, where: str, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _err(path, where, f"{_short(raw)}: give a mapping of dotted config keys to "
                                "values, e.g. {objective.eta: 1.0}")
    for k in raw:
        if not isinstance(k, str) or not _KEY.fullmatch(k):
            raise _err(path, where, f"key {_short(k)}: use a dotted config key such as "
                                    "objective.eta")
        if k == "seed":
            raise _err(path, where, "seed is set by the sweep's seeds list; remove it here")
    return dict(raw)


def _eval(path: Path, raw: Any) -> SweepEval:
    if raw is None:
        return SweepEval()
    if not isinstance(raw, dict):
        raise _err(path, "eval", f"{_short(raw)}: give a mapping with keys "
                                 f"{', '.join(EVAL_KEYS)}")
    _check_keys(path, "eval", raw, EVAL_KEYS)
    out: dict[str, Any] = {}
    for k in ("nll_samples", "max_images", "probe_runs"):
        if k in raw and raw[k] is not None:
            if not _is_int(raw[k]) or raw[k] < 1:
                raise _err(path, f"eval.{k}", f"{_short(raw[k])}: use an integer >= 1")
            out[k] = raw[k]
    for k in ("probes", "figures"):
        if k in raw:
            if not isinstance(raw[k], bool):
                raise _err(path, f"eval.{k}", f"{_short(raw[k])}: use true or false")
            out[k] = raw[k]
    if "latent" in raw:
        if raw["latent"] not in LATENTS:
            raise _err(path, "eval.latent", f"{_short(raw['latent'])}: allowed: "
                                            f"{', '.join(LATENTS)}")
        out["latent"] = raw["latent"]
    if raw.get("labels") is not None:
        labels = raw["labels"]
        if _is_int(labels):
            labels = str(labels)
        if isinstance(labels, list):
            labels = ",".join(str(x) for x in labels)
        if not isinstance(labels, str) or not re.fullmatch(r"(\d+|all)(,(\d+|all))*",
                                                           labels.replace(" ", "")):
            raise _err(path, "eval.labels", f"{_short(raw['labels'])}: give label budgets "
                                            "such as \"100,1000,all\"")
        from maevae.evaluate.probe_options import parse_label_budgets

        try:
            parse_label_budgets(labels.replace(" ", ""))
        except MaevaeError as e:
            raise _err(path, "eval.labels", str(e)) from None
        out["labels"] = labels.replace(" ", "")
    return SweepEval(**out)


def _value_label(v: Any) -> str:
    if isinstance(v, bool):
        s = str(v).lower()
    elif isinstance(v, float):
        s = repr(v)
    elif isinstance(v, (int, str)):
        s = str(v)
    else:
        s = json.dumps(v, separators=(",", ":"))
    return _UNSAFE.sub("-", s)[:40]


def point_label(point: tuple[tuple[str, Any], ...]) -> str:
    """The folder-safe label of a grid point: ``eta0.5_gamma0.1`` (each key's last dotted
    part, the full key with ``.`` when two keys share it; ``base`` without a grid)."""
    if not point:
        return ""
    lasts = [k.rsplit(".", 1)[-1] for k, _ in point]
    names = [k.replace("_", "") if lasts.count(k.rsplit(".", 1)[-1]) > 1 else
             k.rsplit(".", 1)[-1].replace("_", "") for k, _ in point]
    return "_".join(f"{n}{_value_label(v)}" for n, (_, v) in zip(names, point))


def run_id_for(variant: str, point: tuple, seed: int) -> str:
    """``VARIANT__POINT__seedN`` (``VARIANT__seedN`` without a grid): deterministic,
    readable, one folder name."""
    label = point_label(point)
    return "__".join(p for p in (variant, label, f"seed{seed}") if p)


def _override_text(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"


def load_sweep(path: str | Path, sets: list[str] | None = None,
               seeds: list[int] | None = None) -> SweepSpec:
    """Read and validate the sweep file ``path`` and expand it into runs, each with its
    validated config; ``sets`` (``key=value``) apply to every run, ``seeds`` replace the
    file's seeds."""
    path = Path(path)
    raw = read_yaml(path)
    if not raw:
        raise _err(path, "top level", "empty; give at least variants and seeds")
    _check_keys(path, "top level", raw, TOP_KEYS)
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not _LABEL.fullmatch(name):
        raise _err(path, "name", f"{_short(name)}: use letters, digits and . _ + - "
                                 "(a folder name)")
    if seeds is None:
        if "seeds" not in raw:
            raise _err(path, "seeds", "missing; give a list of seeds, e.g. seeds: [1, 2, 3]")
        seeds = _seeds(path, raw["seeds"])
    else:
        seeds = _seeds(path, seeds, "--seeds")
    variants_raw = raw.get("variants")
    if not isinstance(variants_raw, dict) or not variants_raw:
        raise _err(path, "variants", f"{_short(variants_raw)}: give a mapping of labels to "
                                     "{preset: NAME, set: {key: value}}")
    variants: dict[str, dict] = {}
    for label, v in variants_raw.items():
        where = f"variants.{label}"
        if not isinstance(label, str) or not _LABEL.fullmatch(label) or "__" in label:
            raise _err(path, "variants", f"label {_short(label)}: use letters, digits and "
                                         ". _ + - (no '__'), e.g. MAE_eta1")
        if isinstance(v, str):
            v = {"preset": v}
        if not isinstance(v, dict):
            raise _err(path, where, f"{_short(v)}: give {{preset: NAME, set: {{...}}}}")
        _check_keys(path, where, v, VARIANT_KEYS)
        preset = v.get("preset")
        if not isinstance(preset, str) or not preset:
            raise _err(path, f"{where}.preset", f"{_short(preset)}: give a preset name "
                                                "(e.g. tiny/test) or a YAML path")
        if preset.endswith((".yaml", ".yml")) and not Path(preset).is_absolute():
            rel = path.parent / preset
            if rel.exists() and not Path(preset).exists():
                preset = str(rel)  # a config next to the sweep file
        variants[label] = {"preset": preset,
                           "set": _overrides(path, f"{where}.set", v.get("set"))}
    grid_raw = raw.get("grid") or {}
    if not isinstance(grid_raw, dict):
        raise _err(path, "grid", f"{_short(grid_raw)}: give a mapping of dotted config keys "
                                 "to lists of values")
    grid = _overrides(path, "grid", grid_raw)
    for k, values in grid.items():
        if not isinstance(values, list) or not values:
            raise _err(path, f"grid.{k}", f"{_short(values)}: give a non-empty list of "
                                          "values, e.g. [0.5, 1.0]")
        if len({json.dumps(x, sort_keys=True) for x in values}) != len(values):
            raise _err(path, f"grid.{k}", f"{_short(values)} repeats a value")
    ev = _eval(path, raw.get("eval"))
    points = [tuple(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    runs: list[RunSpec] = []
    seen: dict[str, str] = {}
    for label, v in variants.items():
        for point in points:
            base = [_override_text(k, x) for k, x in v["set"].items()]
            base += [_override_text(k, x) for k, x in point]
            base += list(sets or [])
            for seed in seeds:
                run_id = run_id_for(label, point, seed)
                where = f"run {run_id} (variants.{label}"
                where += f", grid point {point_label(point)})" if point else ")"
                try:
                    cfg = load_config(v["preset"], base + [f"seed={seed}"])
                except ConfigError as e:
                    raise _err(path, where, str(e)) from None
                if run_id in seen:
                    raise _err(path, where, f"same folder name as {seen[run_id]}; make the "
                                            "grid values differ in letters or digits")
                seen[run_id] = where
                runs.append(RunSpec(len(runs), run_id, label, point, seed, cfg))
    return SweepSpec(path, name, seeds, variants, grid, ev, runs)
