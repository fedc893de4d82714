"""``maevae run``: the main job on the embedded default dataset (scikit-learn's 8×8 digits).

Trains a VLAE and an MAE (eta = 1, gamma = 0.5) with the authors' architecture, evaluates
both (importance-sampled NLL, ELBO, KL, MPD, STD, and the representation probes), draws
samples, reconstructions and training curves, and writes a side-by-side Markdown report.
Offline; a few minutes on a 2-core CPU.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from maevae import console
from maevae.config import load_config
from maevae.device import resolve_device
from maevae.evaluate.generate import reconstruct_images, sample_images
from maevae.evaluate.nll import evaluate_run
from maevae.runs.files import atomic_write_text
from maevae.runs.load import load_run_data, new_run
from maevae.statistics import fmt_stat
from maevae.train.trainer import Trainer

__all__ = ["COLUMNS", "PRESETS", "main_job", "render_report"]

PRESETS = {"VLAE": "tiny/digits_vlae", "MAE": "tiny/digits_mae"}
COLUMNS = [("nll", "NLL (IS)"), ("elbo", "L_elbo"), ("recon", "RE"), ("kl", "KL"),
           ("mpd", "MPD"), ("std", "STD")]


def _train_one(label: str, preset: str, out: Path, device: torch.device, progress: bool,
               log, figures: bool) -> dict:
    from maevae.evaluate.figures import save_reconstruction_grid, save_sample_grid
    from maevae.evaluate.run_report import draw_training_curves

    cfg = load_config(preset)
    data = load_run_data(cfg, None)
    run = new_run(out / label.lower(), cfg, data)
    log(f"[{label}] training {preset} on {data.summary()}")
    t0 = time.time()
    trainer = Trainer(cfg, data, run, device, progress=progress, log=log)
    trainer.initialize()
    trainer.fit()
    t_train = time.time() - t0
    t0 = time.time()
    result = evaluate_run(run.path, None, device, progress=progress, log=log)
    if figures:  # otherwise the representation suite draws them (same file names)
        with console.stage(f"[{label}] sampling 64 images from the prior", log):
            x = sample_images(run.path, device, 64, seed=0, progress=progress)
        save_sample_grid(x.numpy(), run.path / "samples.png", run.path.name, data.name, 0,
                         nrow=8)
        with console.stage(f"[{label}] reconstructing 32 test images", log):
            orig, rec = reconstruct_images(run.path, None, device, 32, progress=progress)
        save_reconstruction_grid(orig.numpy(), rec.numpy(), run.path / "reconstructions.png")
        draw_training_curves(run.path)
    result["seconds_train"] = round(t_train, 1)
    result["seconds_eval"] = round(time.time() - t0, 1)
    result["steps"] = trainer.counters.step
    return result


def main_job(out: str | None = None, device_name: str = "auto", progress: bool = True,
             log=console.say, probes: bool = True) -> Path:
    """``maevae run``: train and evaluate VLAE and MAE (:data:`PRESETS`) on the 8×8
    digits in ``out`` (default ``runs/main-<time>``), probe their codes when ``probes``, and
    write ``report.md`` and ``summary.json``; returns the output folder."""
    start = time.time()
    out_dir = Path(out) if out else Path("runs") / time.strftime("main-%Y%m%d-%H%M%S")
    if out_dir.exists() and any(out_dir.iterdir()):
        from maevae.errors import MaevaeError

        raise MaevaeError(f"{out_dir} is not empty; choose another --out (or omit it)")
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(device_name)
    results = {}
    for label, preset in PRESETS.items():
        results[label] = _train_one(label, preset, out_dir, device, progress, log,
                                    figures=not probes)
    probe_md = ""
    if probes:
        from maevae.evaluate.compare import probe_section
        from maevae.evaluate.representation import run_probes

        for label in PRESETS:
            log(f"[{label}] representation probes and figures ({out_dir / label.lower()})")
            run_probes(out_dir / label.lower(), None, device, latent="mu", runs=3,
                       labels="100,all", progress=progress, log=log)
        probe_md = probe_section([(label, out_dir / label.lower()) for label in PRESETS])
    report = render_report(results, probe_md, time.time() - start)
    atomic_write_text(out_dir / "report.md", report)
    atomic_write_text(out_dir / "summary.json", json.dumps(results, indent=2, default=str))
    log(f"\nwrote {out_dir / 'report.md'} ({time.time() - start:.0f} s in all)")
    log(_table(results))
    return out_dir


def _table(results: dict) -> str:
    head = "| model | " + " | ".join(name for _, name in COLUMNS) + " |"
    rows = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for label, r in results.items():
        rows.append(f"| {label} | " + " | ".join(fmt_stat(r[k]) for k, _ in COLUMNS) + " |")
    return "\n".join(rows)


def render_report(results: dict, probe_md: str, seconds: float) -> str:
    """The main job's ``report.md``: the test statistics of both models, whether MAE has
    the larger KL and MPD, the probe tables ``probe_md`` and the time taken."""
    v, m = results["VLAE"], results["MAE"]
    verdict = ("n/a" if m["mpd"] is None or v["mpd"] is None
               else "yes" if m["kl"] > v["kl"] and m["mpd"] > v["mpd"] else "no")
    any_r = next(iter(results.values()))
    lines = [
        "# maevae main job: VLAE vs MAE on scikit-learn's 8×8 digits",
        "",
        f"Dataset: {'; '.join(any_r['data_notes'])}. Test statistics on "
        f"{any_r['stat_images']} binarised test images ({any_r['stat_posterior_samples']} "
        f"posterior samples); NLL by importance sampling with K = {any_r['nll_samples']} on "
        f"{any_r['nll_images']} images. All numbers in nats per image. Total time "
        f"{seconds:.0f} s.",
        "",
        "## Density estimation and posterior geometry (the paper's Table 4 columns)",
        "",
        _table(results),
        "",
        f"MAE encodes more information than the VLAE (larger KL and MPD): **{verdict}** "
        f"(KL {m['kl']:.2f} vs {v['kl']:.2f}; MPD {fmt_stat(m['mpd'])} vs {fmt_stat(v['mpd'])}).",
        "",
        "| model | training steps | train time (s) | evaluation time (s) |",
        "|---|---|---|---|",
    ]
    for label, r in results.items():
        lines.append(f"| {label} | {r['steps']} | {r['seconds_train']} | {r['seconds_eval']} |")
    if probe_md:
        lines += ["", "## Representations (clustering, label-budget probes, latent diagnostics)",
                  "", probe_md]
    lines += ["", "## Samples and reconstructions", ""]
    for label in results:
        d = label.lower()
        lines += [f"**{label}** — samples from the prior (left), test images | greedy "
                  "reconstructions (right)", "",
                  f"![{label} samples]({d}/samples.png) "
                  f"![{label} reconstructions]({d}/reconstructions.png)", ""]
    lines += ["## Training curves", "",
              "Each run's training loss terms (every train.log_every steps) and validation "
              "statistics (after each epoch) against the optimizer step, from its "
              "metrics.jsonl (nats per image; elbo = RE + KL).", ""]
    for label in results:
        lines += [f"![{label} training curves]({label.lower()}/training_curves.png)", ""]
    lines += ["Each run directory holds its config.yaml, metrics.jsonl, checkpoints, best "
              "model and eval.json; `maevae eval DIR --nll-samples 4096` re-evaluates one."]
    return "\n".join(lines) + "\n"
