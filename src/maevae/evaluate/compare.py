"""Several evaluated runs side by side, with the paper's published rows (``maevae compare``).

:func:`compare_runs` puts evaluated runs side by side in the paper's layouts (with the
published rows of the matching presets, marked "(paper)"); :func:`probe_section` gives the
clustering / probe / diagnostics tables of several runs for embedding in another report;
:func:`paper_key_for` says which published row, if any, a run's config reproduces.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from maevae.data.registry import DATASETS
from maevae.errors import MaevaeError
from maevae.evaluate.paper_numbers import PAPER
from maevae.evaluate.report import render_comparison, render_representation_tables
from maevae.runs.directory import RunDir
from maevae.runs.load import load_run_config
from maevae.runs.results import EVAL_FILE, read_results

__all__ = ["compare_runs", "paper_key_for", "probe_section"]

_PAPER_DATASETS = {"mnist": ("mnist",), "omniglot": ("omniglot", "omniglot_mat"),
                   "cifar10": ("cifar10",)}


def _remedy_on(cfg) -> bool:
    """Whether any posterior-collapse remedy of docs/remedies.md is switched on."""
    o = cfg.objective
    return (o.kl_weight != 1.0 or o.kl_anneal != "off" or o.mmd_weight > 0
            or o.free_bits_mode == "per_dim" or cfg.model.encoder.bn_mu_scale is not None)


def paper_key_for(cfg) -> str | None:
    """The ``paper_numbers`` key of a run's preset, or None when no published row matches.

    The config ``name`` ``<dataset>_<model>`` (e.g. ``mnist_mae_eta1.0_gamma0.5``) maps to
    ``<dataset>/<model>``; the key is used only if the paper has it, the dataset is the
    same, and the objective agrees with the preset (η, γ; free bits for ``vlae_fb``; the
    factorised decoder for ``resnet_vae_af``; no posterior-collapse remedy), so a renamed or
    overridden run gets no paper row.
    """
    dataset, sep, model = str(getattr(cfg, "name", "")).partition("_")
    if not sep or dataset not in _PAPER_DATASETS:
        return None
    if cfg.data.name not in _PAPER_DATASETS[dataset]:
        return None
    key = f"{dataset}/{model}"
    if key not in PAPER:
        return None
    o = cfg.objective
    if _remedy_on(cfg):  # the paper has no posterior-collapse remedies (docs/remedies.md)
        return None
    if model.startswith("mae_eta"):
        try:
            eta, gamma = (float(v) for v in model[len("mae_eta"):].split("_gamma"))
        except ValueError:
            return None
        if not (math.isclose(o.eta, eta) and math.isclose(o.gamma, gamma)):
            return None
    else:
        if o.eta or o.gamma:
            return None
        free_bits = bool(o.free_bits > 0 and o.free_bits_mode != "off")
        if free_bits != (model == "vlae_fb"):
            return None
        if (cfg.model.decoder.type == "resnet") != (model == "resnet_vae_af"):
            return None
    return key


def _load_evaluated(run_dir) -> tuple:
    run = RunDir(run_dir)
    cfg = load_run_config(run)  # raises for a folder that is not a run directory
    path = run.path / EVAL_FILE
    if not path.exists():
        raise MaevaeError(f"{run.path} has no eval.json: evaluate it first with "
                          f"`maevae eval {run.path} --probes`")
    return run, cfg, read_results(path)


def _names(runs: list, names: Sequence[str] | None, with_dataset: bool = False) -> list[str]:
    """Row names: ``names``, else the run folders' names (their paths when two share a name),
    followed by `` (dataset)`` when ``with_dataset``."""
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != len(runs):
            raise MaevaeError(f"{len(runs)} runs but {len(names)} names: give one name per run")
        return names
    out = [r.path.name or str(r.path) for r, _, _ in runs]
    if len(set(out)) < len(out):  # same folder names under different parents
        out = [str(r.path) for r, _, _ in runs]
    if with_dataset:
        out = [f"{n} ({_dataset_label(cfg, ev)})" for n, (_, cfg, ev) in zip(out, runs)]
    return out


def _dataset_label(cfg, ev) -> str:
    """The dataset a run was trained on, as people write it (``Fashion-MNIST``, ``digits``)."""
    name = ev.dataset or cfg.data.name
    spec = DATASETS.get(name)
    return spec.label if spec is not None else str(name)


def _image_shape(run) -> str:
    """``CxHxW`` from the run's run.json (``?`` when it does not say)."""
    shape = run.meta().get("image_shape")
    return "x".join(str(v) for v in shape) if isinstance(shape, list) and shape else "?"


def data_mismatch_warning(loaded: list, labels: Sequence[str]) -> str | None:
    """One line naming the runs when they differ in dataset or image size, else None.

    Their NLLs (nats per image) are then not comparable: an 8x8 digit has 64 pixels, an
    MNIST image 784.
    """
    facts = [(_dataset_label(cfg, ev), _image_shape(run)) for run, cfg, ev in loaded]
    what = [w for w, i in (("dataset", 0), ("image size", 1))
            if len({f[i] for f in facts}) > 1]
    if not what:
        return None
    runs = "; ".join(f"{n}: {d}, {s}" for n, (d, s) in zip(labels, facts))
    return (f"these runs differ in {' and '.join(what)} ({runs}), so their numbers (NLL in "
            "nats per image, accuracies) are not comparable across them")


def _split_named(run_dirs, names: Sequence[str] | None) -> tuple[list, list[str] | None]:
    """Accept run directories or (name, run directory) pairs; returns (dirs, names)."""
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    items = list(run_dirs)
    pairs = [isinstance(i, (tuple, list)) and len(i) == 2 for i in items]
    if items and all(pairs):
        if names is not None:
            raise MaevaeError("give names either as (name, run_dir) pairs or as names=, "
                              "not both")
        return [d for _, d in items], [str(n) for n, _ in items]
    if any(pairs):
        raise MaevaeError("mix of run directories and (name, run_dir) pairs: use one form")
    return items, names


def _load_many(run_dirs) -> list:
    run_dirs = list(run_dirs)
    if not run_dirs:
        raise MaevaeError("nothing to compare: give at least one RUN_DIR")
    seen: dict = {}
    for d in run_dirs:
        p = Path(d).resolve()
        if p in seen:
            raise MaevaeError(f"{d} is given twice: list each run directory once")
        seen[p] = d
    return [_load_evaluated(d) for d in run_dirs]


def compare_runs(run_dirs: Sequence, names: Sequence[str] | None = None) -> str:
    """Markdown: several evaluated runs side by side in the paper's layouts.

    ``run_dirs``: run directories, or ``(name, run_dir)`` pairs. Tables 4, 2 and 5 and the
    latent diagnostics, one row per run (named by ``names``, the pairs' names, or the
    folder name and dataset, e.g. ``mae (Fashion-MNIST)``), each followed by the paper's
    published row for the run's preset when there is one (:func:`paper_key_for`), labelled
    "(paper)"; then a table saying what each row is (folder, config name, dataset, image
    size, training step, latent, runs, paper key). Runs that differ in dataset or image
    size get a warning line naming them (:func:`data_mismatch_warning`).
    """
    run_dirs, names = _split_named(run_dirs, names)
    loaded = _load_many(run_dirs)
    labels = _names(loaded, names, with_dataset=True)
    keys = [paper_key_for(cfg) for _, cfg, _ in loaded]
    warning = data_mismatch_warning(loaded, labels)
    text = render_comparison([(n, ev.to_dict()) for n, (_, _, ev) in zip(labels, loaded)],
                             keys, warnings=[warning] if warning else [])
    rows = ["| Model | run directory | config name | dataset | image size | best step | latent "
            "| probe runs | NLL samples × images | paper row |",
            "|---|---|---|---|---|---:|---|---:|---|---|"]
    for n, (run, cfg, ev), key in zip(labels, loaded, keys):
        st = ev.representation.probe_settings or {}
        lik = ev.likelihood
        nll = (f"{lik.nll_samples} × {lik.nll_images}" if lik.nll_samples is not None
               else "—")
        rows.append(f"| {n} | {run.path} | {cfg.name} | {_dataset_label(cfg, ev)} | "
                    f"{_image_shape(run)} | {st.get('model_step', '—')} | "
                    f"{st.get('latent', '—')} | "
                    f"{st.get('runs', '—')} | {nll} | {key or '—'} |")
    return text.rstrip() + "\n\n## Runs\n\n" + "\n".join(rows) + "\n"


def probe_section(run_dirs: Sequence, names: Sequence[str] | None = None,
                  level: int = 3) -> str:
    """Markdown tables of clustering, probes and diagnostics for several evaluated runs.

    For embedding in another report (the main job's): Table 2 and Table 5 layouts, the
    other clustering scores and the latent diagnostics, one row per run, with the paper's
    rows where a run's preset has them; headings at Markdown ``level`` (default 3, for a
    section under a ``##`` heading). ``run_dirs``: run directories, or ``(name,
    run_dir)`` pairs; rows are named by ``names``, the pairs' names, or the folder names.
    Every run must have been through :func:`run_probes`.
    """
    run_dirs, names = _split_named(run_dirs, names)
    loaded = _load_many(run_dirs)
    for run, _, ev in loaded:
        if ev.representation.probes is None and ev.representation.clustering is None:
            raise MaevaeError(f"{run.path}/eval.json has no clustering or probe results: run "
                              f"`maevae eval {run.path} --probes` first")
    labels = _names(loaded, names)
    keys = [paper_key_for(cfg) for _, cfg, _ in loaded]
    return render_representation_tables(
        [(n, ev.to_dict()) for n, (_, _, ev) in zip(labels, loaded)], keys, level)
