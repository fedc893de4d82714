"""The figures and ``report.md`` of one run's representation suite.

:func:`draw_figures` draws ``tsne.png``, ``reconstructions.png``, ``samples.png``,
``kl_per_dim.png`` and ``training_curves.png`` (:func:`draw_training_curves`, from
``metrics.jsonl``) into the run directory, each between a start line and a "wrote ... in
X s" line; :func:`run_report` renders ``report.md`` from ``eval.json`` (the paper's tables,
the figures, notes on the protocol, the timings).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from maevae import console
from maevae.data.transforms import model_inputs, to_unit
from maevae.errors import MaevaeError
from maevae.evaluate import figures as F
from maevae.evaluate.codes import LATENT_TITLES
from maevae.evaluate.compare import paper_key_for
from maevae.evaluate.report import render_run_report
from maevae.runs.directory import RunDir

__all__ = ["CURVE_KEYS", "FIGURE_CAPTIONS", "FIGURE_FILES", "draw_figures", "draw_training_curves",
           "run_report", "training_curve_rows"]

FIGURE_FILES = {
    "tsne": "tsne.png",
    "reconstructions": "reconstructions.png",
    "samples": "samples.png",
    "kl_per_dim": "kl_per_dim.png",
    "training_curves": "training_curves.png",
}
CURVE_KEYS = ("loss", "elbo", "recon", "kl", "mpd", "std")  # one panel each


def training_curve_rows(metrics: list[dict]) -> list[dict]:
    """``metrics.jsonl`` rows as :func:`~maevae.evaluate.figures.plot_training_curves` rows:
    ``{"step": s, "train_<key>": v, ...}`` for training rows and ``"val_<key>"`` for
    validation rows, ``key`` in :data:`CURVE_KEYS` (other kinds and keys are left out)."""
    return [{"step": r["step"], **{f"{r['kind']}_{k}": r[k] for k in CURVE_KEYS if k in r}}
            for r in metrics if r.get("kind") in ("train", "val")]


def draw_training_curves(run_path: Path, path: Path | None = None) -> str | None:
    """Draw a run's training curves (``training_curves.png`` in the run directory unless
    ``path``) from its ``metrics.jsonl``; None, drawing nothing, when it has no rows."""
    rows = training_curve_rows(RunDir(run_path).read_metrics())
    if not rows:
        return None
    return _plot_curves(rows, path or Path(run_path) / FIGURE_FILES["training_curves"],
                        Path(run_path).name)


def _plot_curves(rows: list[dict], path: Path, name: str) -> str:
    keys = [f"{kind}_{k}" for k in CURVE_KEYS for kind in ("train", "val")]
    return F.plot_training_curves(
        rows, path, keys=keys,
        title=f"{name}: training rows (every train.log_every steps) and validation (after "
              "each epoch); elbo = RE + KL, nats per image")


def draw_figures(run_path: Path, cfg, model, data, device, arrays, kl_per_dim, latent: str,
                  n_samples: int, n_recon: int, tsne_points: int, tsne_iter: int, log,
                  autocast, progress: bool = False) -> tuple[dict[str, str], dict[str, float]]:
    """Draw the run's figures (:data:`FIGURE_FILES`) into ``run_path``, each framed by a
    start line and a "wrote <file> in X s" line; returns (name -> file, name -> seconds)."""
    figs: dict[str, str] = {}
    times: dict[str, float] = {}

    def timed(name: str, start: str, fn) -> None:
        with console.stage(start, log, done=f"wrote {FIGURE_FILES[name]}") as timer:
            fn(run_path / FIGURE_FILES[name])
        times[name] = round(timer.seconds, 2)
        figs[name] = FIGURE_FILES[name]

    te, test_y = arrays["test_codes"], data.test_y
    timed("tsne", f"t-SNE of {min(len(te), tsne_points)} test codes ({tsne_iter} iterations)",
          lambda p: F.plot_tsne(
        te, test_y, p, max_points=tsne_points, n_iter=tsne_iter,
        title=f"t-SNE of test codes [{LATENT_TITLES[latent]}]",
        class_names=getattr(data, "class_names", None)))

    def recon(p):
        x = model_inputs(data.test_x[:n_recon], cfg.data.binarize).to(device)
        with torch.no_grad(), autocast(device, "fp32"), \
                console.bar(x.shape[-2], "reconstructing", progress, "row") as b:
            r = model.reconstruct(x, on_row=b.update)
        what = "thresholded test images" if cfg.data.binarize else "test images"
        F.save_reconstruction_grid(to_unit(x, cfg.data.binarize).numpy(),
                                   to_unit(r, cfg.data.binarize).numpy(),
                                   p, pairs_per_row=8,
                                   title=f"{what} (original) and greedy reconstructions "
                                         "from z = mu(x)")

    timed("reconstructions", f"reconstructing {min(n_recon, len(data.test_x))} test images",
          recon)

    def samples(p):
        seed = int(cfg.seed) + 5
        g = torch.Generator(device=device).manual_seed(seed)
        with torch.no_grad(), autocast(device, "fp32"), \
                console.bar(data.image_shape[1], "sampling", progress, "row") as b:
            x = model.sample(n_samples, generator=g, on_row=b.update)
        F.save_sample_grid(to_unit(x, cfg.data.binarize).numpy(), p, run_path.name, data.name,
                           seed, scale=max(1, math.ceil(84 / min(x.shape[-2:]))))

    timed("samples", f"sampling {n_samples} images from the prior", samples)
    timed("kl_per_dim", "KL per latent dimension", lambda p: F.plot_kl_per_dim(
        kl_per_dim, p, title="Test-set mean KL(q(z_d|x) || N(0,1)) per latent dimension"))

    try:
        rows = training_curve_rows(RunDir(run_path).read_metrics())
    except MaevaeError as e:  # an unreadable metrics.jsonl costs this figure only
        console.warn(f"no training curves: {e}")
        rows = []
    if rows:
        timed("training_curves", f"training curves from {len(rows)} rows of metrics.jsonl",
              lambda p: _plot_curves(rows, p, run_path.name))
    return figs, times


FIGURE_CAPTIONS = {
    "tsne": "t-SNE of the test codes, coloured by label",
    "reconstructions": "Reconstructions (original | reconstruction)",
    "samples": "Samples from the prior",
    "kl_per_dim": "KL per latent dimension",
    "training_curves": "Training curves (loss terms every train.log_every steps, "
                       "validation after each epoch)",
}


def run_report(run, cfg, ev: dict, figs: dict[str, str], best: dict) -> str:
    """The run's ``report.md``: its evaluation ``ev`` (likelihood, statistics, probes,
    diagnostics) with the settings and timings, and the figures ``figs``."""
    st = ev.get("probe_settings", {})
    tm = ev.get("probe_timings", {})
    d = ev.get("diagnostics", {})
    notes = [
        f"Run {run.path} (config {cfg.name}); best EMA model at step {best.get('step')} "
        f"(sha256 {str(best.get('sha256'))[:12]}).",
        f"Latent codes: {st.get('latent_description')} ({st.get('latent')}) of "
        f"{st.get('inputs')}. K-means and probes use the {st.get('n_train_codes')} codes of "
        f"the {st.get('pool')} images and are scored on the {st.get('n_test_codes')} test "
        f"codes; {st.get('runs')} run(s) (K-means seeds / labelled draws); labelled subsets "
        f"{'class-balanced' if st.get('balanced') else 'uniform'}.",
        "Table 4 columns RE, KL, MPD, STD, L_elbo, NLL come from `maevae eval` "
        "(binarised test copies); the diagnostics' MPD/STD (512) use mu/logvar of the "
        "thresholded test images in batches of 512. Missing values (—) were not computed.",
        "KL per dimension is the analytic KL of q(z_d|x) to N(0, 1) averaged over the test "
        "images: a collapse indicator, not the model's KL to its flow prior.",
        f"I(x; z) is a Monte-Carlo estimate under the aggregate posterior of the "
        f"{d.get('images')} test images; it cannot exceed log N = "
        f"{d.get('mutual_information_bound', float('nan')):.2f} nats.",
    ]
    notes += [f"Small data: {n}." for n in st.get("defaults_dropped", [])]
    text = render_run_report(run.path.name, ev,
                             {FIGURE_CAPTIONS[k]: v for k, v in figs.items()}, notes,
                             paper_key=paper_key_for(cfg))
    rows = [("encoding" + (" (from cache)" if tm.get("codes_cached") else
                           f" ({tm.get('encoded_images')} images)"), tm.get("encode_s"))]
    rows += [(f"K-means K={k} ({st.get('runs')} runs)", s)
             for k, s in tm.get("clustering_per_k_s", {}).items()]
    for name, per in tm.get("probe_fit_predict_s", {}).items():
        rows += [(f"{name}, {b} labels (per run)", s) for b, s in per.items()]
    rows += [("diagnostics (incl. I(x;z))", tm.get("diagnostics_s"))]
    rows += [(f"figure {FIGURE_FILES[k]}", s) for k, s in tm.get("figures_s", {}).items()]
    rows += [("total", tm.get("total_s"))]
    lines = ["## Timings", "",
             f"Wall-clock seconds on this machine ({tm.get('cpu_count')} CPUs, "
             f"{tm.get('torch_threads')} thread(s), load average {tm.get('load_avg_start')} "
             "at the start).", "", "| Stage | seconds |", "|---|---:|"]
    lines += [f"| {name} | {'—' if s is None else f'{s:.2f}'} |" for name, s in rows]
    return text.rstrip() + "\n\n" + "\n".join(lines) + "\n"
