"""Evaluating a trained run directory: test statistics and the IS-NLL -> ``eval.json``.

``evaluate_run`` writes ``eval.json``. The importance-sampled NLL over the test set saves its
per-image results every few images (``eval_partial.json`` naming its
``eval_partial-<images>.safetensors``, each written atomically, the new tensors before the
JSON that points to them), so an interrupted evaluation resumes where it stopped instead of
starting over, whenever it was interrupted.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from maevae import console
from maevae.config import RunConfig
from maevae.data.transforms import data_dims, evaluation_inputs, redraw_dynamic
from maevae.device import autocast_dtype, maybe_compile_decoder, note_slow_bf16
from maevae.errors import ConfigError, MaevaeError
from maevae.inference.likelihood import bits_per_dim, importance_sampled_batch, iterate_batches
from maevae.models.vae import VAE
from maevae.runs.budget import check_copies, check_model, device_memory
from maevae.runs.directory import RunDir
from maevae.runs.files import (
    atomic_write_bytes,
    atomic_write_text,
    sha256_bytes,
    tensors_to_bytes,
)
from maevae.runs.load import load_run_config, load_run_data, load_trained_model
from maevae.runs.results import (
    EVAL_FILE,
    EvalResults,
    Likelihood,
    Representation,
    TestStatistics,
    read_results,
    write_results,
)
from maevae.statistics import batch_statistics, fmt_stat

__all__ = [
    "COMPILE_AFTER_SAMPLES",
    "PARTIAL_EVERY_S",
    "evaluate_run",
    "importance_sampled_test_nll",
]

PARTIAL_EVERY_S = 30.0


# eval.compile=auto compiles evaluations with this many importance samples in all (64 images
# at K = 4096): compiling costs 0.5-1 minute on CPU and saves ~0.6 s per 512 samples
COMPILE_AFTER_SAMPLES = 2**18


def _settings_key(cfg: RunConfig, k: int, n_images: int, precision: str, best: dict) -> str:
    key = json.dumps({"k": k, "n": n_images, "precision": precision, "seed": cfg.seed,
                      "copies": cfg.data.test_copies, "model": best.get("sha256")},
                     sort_keys=True)
    return sha256_bytes(key.encode())[:16]


def importance_sampled_test_nll(run: RunDir, model: VAE, x: torch.Tensor, cfg: RunConfig, k: int,
                                precision: str, best: dict, progress: bool = True) -> dict:
    """IS-NLL on x with partial results saved to the run directory, resumed when present."""
    from safetensors.torch import load as st_load

    key = _settings_key(cfg, k, x.shape[0], precision, best)
    part_j = run.path / "eval_partial.json"
    names = ("nll", "nll_mc_stderr", "elbo", "recon", "kl")
    done: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    start_at = 0
    if part_j.exists():
        try:  # partial results from an interrupted evaluation with the same settings and model
            meta = json.loads(part_j.read_text())
            fname = str(meta["file"])
            if meta.get("key") == key and fname.startswith("eval_partial-") and "/" not in fname:
                data = (run.path / fname).read_bytes()
                if sha256_bytes(data) == meta.get("sha256"):
                    saved, n_saved = st_load(data), int(meta["done"])
                    if all(saved[n].shape == (n_saved,) for n in names):
                        start_at, done = n_saved, {n: [saved[n]] for n in names}
        except Exception:  # unreadable, stale or forged partial results: start over
            start_at, done = 0, {n: [] for n in names}
    g = torch.Generator(device=x.device).manual_seed(cfg.seed + 99)
    dtype = autocast_dtype(precision)
    chunk = cfg.eval.nll_chunk
    bar = console.bar(x.shape[0], f"IS-NLL (K={k})", progress, unit="img", initial=start_at)
    last_save = time.time()

    def save(n_done: int) -> None:
        tensors = {n: torch.cat(done[n]) if done[n] else torch.zeros(0) for n in names}
        data = tensors_to_bytes(tensors)
        fname = f"eval_partial-{n_done:08d}.safetensors"
        atomic_write_bytes(run.path / fname, data)  # the tensors before the JSON naming them
        atomic_write_text(part_j, json.dumps({"key": key, "done": n_done, "file": fname,
                                              "sha256": sha256_bytes(data)}))
        _remove_partials(run, keep=fname)

    pos = start_at
    for sl in iterate_batches(x[start_at:], k, chunk):
        xb = x[start_at + sl.start:start_at + sl.stop]
        # each batch draws from a generator tied to its position: resuming changes nothing
        g.manual_seed(cfg.seed * 7919 + start_at + sl.start)
        res = importance_sampled_batch(model, xb, k, chunk, g, dtype)
        for n in names:
            done[n].append(getattr(res, n).double().cpu())
        pos = start_at + sl.stop
        bar.update(xb.shape[0])
        if time.time() - last_save > PARTIAL_EVERY_S:
            save(pos)
            last_save = time.time()
    bar.close()
    out = {n: torch.cat(done[n]) for n in names}
    part_j.unlink(missing_ok=True)
    _remove_partials(run)
    return out


def _kept_representation(eval_path: Path) -> Representation:
    """What a new evaluation keeps of an older eval.json: its clustering, probes,
    diagnostics and figures (not its probe settings and timings, nor unknown keys). A file
    that cannot be read or fails validation is replaced as a whole."""
    try:
        old = read_results(eval_path, missing_ok=True).representation
    except MaevaeError:
        return Representation()
    return Representation(clustering=old.clustering, probes=old.probes,
                          diagnostics=old.diagnostics, figures=old.figures)


def _remove_partials(run: RunDir, keep: str | None = None) -> None:
    for p in [*run.path.glob("eval_partial-*.safetensors"), *run.path.glob(".eval_partial-*")]:
        if p.name != keep:
            p.unlink(missing_ok=True)


def _note_slow_chunk(cfg, image_shape: tuple[int, int, int], explicit: bool) -> None:
    """One warning when a pass of ``eval.nll_chunk`` pairs makes activation blocks above the
    32 MiB that the ``bounded`` allocator policy keeps mapped (e.g. 512, the default of runs
    made before 2026-12-02): each pass then page-faults them in again (~2x slower)."""
    from maevae.config import EvalConfig
    from maevae.device import MMAP_ABOVE, malloc_policy_from_env

    chunk, default = cfg.eval.nll_chunk, EvalConfig().nll_chunk
    block = chunk * image_shape[1] * image_shape[2] * cfg.model.decoder.channels * 4  # bytes
    if explicit or chunk <= default or block <= MMAP_ABOVE or malloc_policy_from_env() != "bounded":
        return
    console.warn(f"this run's eval.nll_chunk is {chunk}: a decoder pass holds "
                 f"{block / 2**20:.0f} MiB blocks, above the 32 MiB kept mapped, so it runs "
                 f"about 2x slower; pass --nll-chunk {default} (with K >= {chunk}, the same "
                 "values to rounding) or set MAEVAE_MALLOC=heap")


def evaluate_run(run_dir: str | Path, data_root: str | None, device: torch.device,
                 nll_samples: int | None = None, precision: str | None = None,
                 max_images: int | None = None, progress: bool = True, log=console.say,
                 compile: str | None = None, nll_chunk: int | None = None) -> dict:
    """Evaluate the trained run in ``run_dir`` on ``device`` and write its ``eval.json``.

    The test statistics (ELBO, RE, KL, MPD, STD) and the importance-sampled NLL with
    ``nll_samples`` (default ``eval.nll_samples``) samples per image over the fixed binarised
    test copies (the first ``max_images`` only when given), resumable after an interruption.
    ``nll_chunk`` overrides the run's ``eval.nll_chunk`` ((image, sample) pairs per decoder
    pass: memory and speed; the statistics are the same to rounding whatever the chunk, the
    IS-NLL when both chunks are <= K, e.g. K = 4096). Returns the written results as a
    dict."""
    run = RunDir(run_dir)
    cfg = load_run_config(run)
    if nll_chunk is not None:
        cfg.eval.nll_chunk = int(nll_chunk)
    _note_slow_chunk(cfg, tuple(run.meta()["image_shape"]), nll_chunk is not None)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    memory = device_memory(device)
    check_model(cfg, tuple(run.meta()["image_shape"]), memory)  # before loading the weights
    model, best = load_trained_model(run, cfg, device)
    k = nll_samples or cfg.eval.nll_samples
    if k < 1:
        raise ConfigError(f"nll_samples={k}: the number of importance samples K must be >= 1 "
                          "(eval.nll_samples)")
    precision = precision or cfg.eval.precision
    note_slow_bf16(precision, device, "eval.precision", "pass --precision fp32", console.warn)
    data = load_run_data(cfg, data_root, run)
    check_copies(cfg, data.image_shape, len(data.test_x), memory)  # before making them
    x_all, copies = evaluation_inputs(data.test_x, cfg.data, cfg.seed + 2)
    g = torch.Generator(device=device).manual_seed(cfg.seed + 3)
    x_all = redraw_dynamic(x_all.to(device), copies, g)
    limit = max_images if max_images is not None else cfg.eval.max_images
    if limit is not None:  # quick checks: the first N binarised test images only
        x_all = x_all[:limit]
    # the compile decision before the test statistics: they then run on the same (compiled)
    # decoder as the IS pass, as fast per sample (benchmarks/validation_cost.py)
    compiled = maybe_compile_decoder(model, compile or cfg.eval.compile, x_all.shape[0] * k,
                                     COMPILE_AFTER_SAMPLES, device, console.warn)
    if compiled:
        log("compiling the PixelCNN core with torch.compile (eval.compile="
            f"{compile or cfg.eval.compile}); the first pass takes about a minute")
    t0 = time.time()
    with console.bar(x_all.shape[0], "test statistics", progress, unit="img") as bar:
        stats = batch_statistics(model, x_all, cfg.train.eval_batch,
                                 cfg.objective.kl_samples_eval, g, precision,
                                 progress=bar.update, chunk=cfg.eval.nll_chunk)
    t_stats = time.time() - t0
    x_nll = x_all
    t0 = time.time()
    res = importance_sampled_test_nll(run, model, x_nll, cfg, k, precision, best, progress)
    t_nll = time.time() - t0
    n = x_nll.shape[0]
    nll = float(res["nll"].mean())
    dims = data_dims(data.image_shape)
    lik = Likelihood(
        nll=nll,
        nll_stderr=float(res["nll"].std() / math.sqrt(n)) if n > 1 else 0.0,
        nll_mc_stderr=float(res["nll_mc_stderr"].pow(2).sum().sqrt() / n),
        nll_elbo=float(res["elbo"].mean()),
        is_recon=float(res["recon"].mean()), is_kl=float(res["kl"].mean()),
        bits_per_dim=bits_per_dim(nll, dims) if not cfg.data.binarize else None,
        nll_samples=k, nll_images=n, test_copies=copies, test_images=int(len(data.test_x)),
        precision=precision, compiled=compiled)
    test_stats = TestStatistics(
        elbo=stats["elbo"], recon=stats["recon"], kl=stats["kl"], mpd=stats["mpd"],
        std=stats["std"], stat_images=int(x_all.shape[0]),
        stat_posterior_samples=cfg.objective.kl_samples_eval, stat_batch=cfg.train.eval_batch)
    eval_path = run.path / EVAL_FILE
    results = EvalResults(
        likelihood=lik, statistics=test_stats,
        representation=_kept_representation(eval_path),
        best_epoch=best.get("epoch"), dataset=data.name, data_notes=data.notes,
        seconds={"statistics": round(t_stats, 2), "nll": round(t_nll, 2)})
    write_results(eval_path, results)
    out = results.to_dict()
    inputs = (f"{copies or 'dynamic'} binarised copies" if cfg.data.binarize
              else f"8-bit, {out['bits_per_dim']:.3f} bits/dim")
    log(f"test: NLL {nll:.2f} ± {out['nll_stderr']:.2f} nats (K={k}, {n} images, "
        f"{inputs}), ELBO {stats['elbo']:.2f} "
        f"(RE {stats['recon']:.2f}, KL {stats['kl']:.2f}), MPD {fmt_stat(stats['mpd'])}, "
        f"STD {fmt_stat(stats['std'])}")
    return out
