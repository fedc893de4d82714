"""The figures and ``report.md`` of one run's representation suite.

:func:`draw_figures` draws ``tsne.png``, ``reconstructions.png``, ``samples.png`` and
``kl_per_dim.png`` into the run directory; :func:`run_report` renders ``report.md`` from
``eval.json`` (the paper's tables, the figures, notes on the protocol, the timings).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from maevae.data.transforms import model_inputs, to_unit
from maevae.evaluate import figures as F
from maevae.evaluate.codes import LATENT_TITLES
from maevae.evaluate.compare import paper_key_for
from maevae.evaluate.report import render_run_report

__all__ = ["FIGURE_CAPTIONS", "FIGURE_FILES", "draw_figures", "fmt_s", "run_report"]

FIGURE_FILES = {
    "tsne": "tsne.png",
    "reconstructions": "reconstructions.png",
    "samples": "samples.png",
    "kl_per_dim": "kl_per_dim.png",
}


def fmt_s(s: float) -> str:
    """Seconds as ``1.23 s`` (two decimals below 10 s, one above)."""
    return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"


def draw_figures(run_path: Path, cfg, model, data, device, arrays, kl_per_dim, latent: str,
                  n_samples: int, n_recon: int, tsne_points: int, tsne_iter: int, log,
                  autocast) -> tuple[dict[str, str], dict[str, float]]:
    """Draw a run's figures into ``run_path`` (samples, reconstructions, t-SNE of the
    codes, KL per dimension, ...); returns ``(figure name -> file, figure name -> seconds)``."""
    figs: dict[str, str] = {}
    times: dict[str, float] = {}

    def timed(name: str, fn) -> None:
        t0 = time.perf_counter()
        fn(run_path / FIGURE_FILES[name])
        times[name] = round(time.perf_counter() - t0, 2)
        figs[name] = FIGURE_FILES[name]
        log(f"figure: {FIGURE_FILES[name]} ({fmt_s(times[name])})")

    te, test_y = arrays["test_codes"], data.test_y
    timed("tsne", lambda p: F.plot_tsne(
        te, test_y, p, max_points=tsne_points, n_iter=tsne_iter,
        title=f"t-SNE of test codes [{LATENT_TITLES[latent]}]"))

    def recon(p):
        x = model_inputs(data.test_x[:n_recon], cfg.data.binarize).to(device)
        with torch.no_grad(), autocast(device, "fp32"):
            r = model.reconstruct(x)
        what = "thresholded test images" if cfg.data.binarize else "test images"
        F.save_reconstruction_grid(to_unit(x, cfg.data.binarize).numpy(),
                                   to_unit(r, cfg.data.binarize).numpy(),
                                   p, pairs_per_row=8,
                                   title=f"{what} (original) and greedy reconstructions "
                                         "from z = mu(x)")

    timed("reconstructions", recon)

    def samples(p):
        g = torch.Generator(device=device).manual_seed(int(cfg.seed) + 5)
        with torch.no_grad(), autocast(device, "fp32"):
            x = model.sample(n_samples, generator=g)
        F.save_image_grid(to_unit(x, cfg.data.binarize).numpy(), p,
                          nrow=max(1, math.ceil(math.sqrt(n_samples))),
                          scale=max(1, math.ceil(84 / min(x.shape[-2:]))),
                          title=f"{n_samples} samples from the prior (z ~ p(z), x ~ p(x|z))")

    timed("samples", samples)
    timed("kl_per_dim", lambda p: F.plot_kl_per_dim(
        kl_per_dim, p, title="Test-set mean KL(q(z_d|x) || N(0,1)) per latent dimension"))
    return figs, times


FIGURE_CAPTIONS = {
    "tsne": "t-SNE of the test codes, coloured by label",
    "reconstructions": "Reconstructions (original | reconstruction)",
    "samples": "Samples from the prior",
    "kl_per_dim": "KL per latent dimension",
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
