"""The paper's representation evaluation of a trained run, in one call (``maevae eval --probes``).

:func:`run_probes` takes a run directory and

1. encodes the training, validation and test images with the best (EMA) model, or takes
   the codes from the run directory's cache (:func:`maevae.evaluate.codes.run_codes`);
2. clusters the training codes with K-means, K = 10, 20, 30
   (:func:`maevae.evaluate.clustering.clustering_suite`: nearest-training-sample labelling,
   majority vote, Hungarian, NMI, ARI; mean ± std over ``runs`` seeds);
3. trains the label-budget probes (KNN k = 10, logistic regression, linear SVM, RBF SVM) on
   100 / 1,000 / all labelled training codes and scores them on the test codes
   (:func:`maevae.evaluate.probes.probe_suite`; class-balanced subsets unless
   ``balanced=False``);
4. computes posterior-collapse diagnostics on the test codes: KL(q(z_d|x) || N(0, 1)) per
   dimension, active units (Var_x mu_d > 0.01), I(x; z) under the aggregate posterior, and
   MPD / STD per batch of 512 (:mod:`maevae.evaluate.diagnostics`);
5. draws the figures into the run directory: ``tsne.png``, ``reconstructions.png``,
   ``samples.png``, ``kl_per_dim.png`` and ``training_curves.png`` (from ``metrics.jsonl``;
   left out when it has no rows);
6. adds ``clustering``, ``probes``, ``diagnostics``, ``figures``, ``probe_timings`` and
   ``probe_settings`` to ``eval.json`` (other keys are kept) and writes ``report.md``.

The "training codes" are, by default, those of the whole training set of the dataset
(``pool="train+val"``: train and validation splits, 60,000 on MNIST as the paper's "all
(60k)"); ``pool="train"`` uses the training split only. Only the images are encoded: the
validation split was used for model selection, never its labels.

Every run records its own wall times in ``eval.json`` (``probe_timings``) and in the
"Timings" table of ``report.md``. Measured on real MNIST (60,000 training + 10,000 test
codes, D = 32, ``--runs 2``; 2 shared CPU cores, one thread, load average 2.5-4 from other
jobs), for a 400-step ``mnist/mae_eta1.0_gamma0.5`` run (first number) and 60-step
``mnist/mae_eta1.0_gamma0.5`` / ``mnist/vlae`` runs (range after it):

==============================================  ============================================
stage                                           seconds
==============================================  ============================================
encoding 70,000 images (mu, batches of 500)     25 (19-38); about 1 s when cached
K-means, n_init 10, 2 runs: K = 10 / 20 / 30    8 / 15 / 28 (9-29 / 26-50 / 35-91)
KNN (k = 10), all 60k labels, fit + predict     2.6 (2.3-5.2)
logistic regression, all labels                 1.8 (0.5-1.5)
linear SVM (LinearSVC), all labels              3.2 (3-17)
RBF SVM (SVC), all labels                       63 (165, 165: barely trained codes overlap,
                                                so many more support vectors)
any probe with 100 or 1,000 labels              < 1.3 per run
diagnostics (I(x; z) on 10k, MPD/STD 512)       11 (10-15)
t-SNE of 5,000 test codes                       51 (37-70)
reconstructions of 32 / samples of 36 images    105 / 127 (86-230 / 100-308): the PixelCNN
                                                decodes pixel by pixel, 784 passes
total of run_probes                             443 (636-887), i.e. 7-15 minutes
==============================================  ============================================

On scikit-learn's 8x8 digits (1,500 training + 297 test codes) the whole suite takes
5-7 s, dominated by the t-SNE and the 64-pass PixelCNN figures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from maevae import console
from maevae.console import fmt_s
from maevae.device import autocast, resolve_device
from maevae.errors import MaevaeError
from maevae.evaluate import diagnostics as diag
from maevae.evaluate.clustering import clustering_suite
from maevae.evaluate.codes import LATENT_TITLES, run_codes
from maevae.evaluate.probe_options import (
    DEFAULT_KS,
    DEFAULT_LABELS,
    POOLS,
    check_suite_args,
    fit_to_sizes,
    parse_label_budgets,
    validate_budgets,
)
from maevae.evaluate.probes import CLASSIFIERS, probe_suite
from maevae.evaluate.run_report import draw_figures, run_report
from maevae.runs.files import atomic_write_text
from maevae.runs.load import load_run
from maevae.runs.results import EVAL_FILE, read_results, write_results
from maevae.statistics import fmt_stat

__all__ = ["run_probes"]


@contextlib.contextmanager
def _thread_limit(n: int | None):
    if not n:
        yield
        return
    from threadpoolctl import threadpool_limits

    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        with threadpool_limits(limits=int(n)):
            yield
    finally:
        torch.set_num_threads(old)


def run_probes(
    run_dir,
    data_root: str | None = None,
    device: torch.device | None = None,
    *,
    latent: str = "mu",
    runs: int = 5,
    labels=None,
    progress: bool = True,
    ks: Sequence[int] | None = None,
    balanced: bool = True,
    pool: str = "train+val",
    seed: int = 0,
    n_init: int = 10,
    figures: bool = True,
    n_samples: int = 36,
    n_recon: int = 32,
    tsne_points: int = 5000,
    tsne_iter: int = 1000,
    mi_samples: int = 4,
    num_threads: int | None = None,
    log: Callable[[str], None] = console.say,
) -> dict:
    """Clustering, label-budget probes, diagnostics, figures and ``report.md`` for a run.

    Adds ``clustering``, ``probes``, ``diagnostics``, ``figures``, ``probe_timings`` and
    ``probe_settings`` to ``RUN_DIR/eval.json`` (created if missing; other keys are kept),
    writes the figures and ``report.md`` into the run directory and returns the added
    entries. ``labels`` is e.g. ``"100,1000,all"`` or a list; ``runs`` K-means seeds / label
    draws (budget "all" is run once: its classifiers are deterministic); ``ks`` the K-means
    K's. ``labels=None`` / ``ks=None`` take the defaults ("100,1000,all"; 10, 20, 30) less
    those that do not fit a small dataset, with a logged note
    (:func:`maevae.evaluate.probe_options.fit_to_sizes`);
    ``balanced`` class-balanced (True) or uniform labelled subsets; ``pool`` which
    images give the training codes (``"train+val"`` = the dataset's whole training set,
    ``"train"`` = the training split only); ``seed`` the first K-means seed and the label
    draws' seed; ``n_init`` K-means restarts; ``figures=False`` skips the figures;
    ``n_samples`` / ``n_recon`` images in the sample / reconstruction grids (autoregressive
    decoders draw them pixel by pixel); ``tsne_points`` / ``tsne_iter`` t-SNE subsample
    size and iterations; ``num_threads`` torch / BLAS / OpenMP threads for the duration
    (default: the run's ``train.num_threads``; 0 = unchanged). Bad input raises a one-line
    :class:`MaevaeError` before any expensive work.
    """
    t_start = time.perf_counter()
    check_suite_args(latent, runs, DEFAULT_KS if ks is None else ks)
    parse_label_budgets(DEFAULT_LABELS if labels is None else labels)
    if pool not in POOLS:
        raise MaevaeError(f"pool {pool!r}: choose one of {', '.join(POOLS)}")
    for name, v in (("n_samples", n_samples), ("n_recon", n_recon)):
        if figures and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise MaevaeError(f"{name}={v!r}: the figures need at least 1 image")
    device = device or resolve_device("auto")
    opened = load_run(run_dir, device)  # raises when there is no model
    run, cfg, model, best = opened.dir, opened.config, opened.model, opened.best
    data = opened.load_data(data_root)
    if data.train_y is None or data.test_y is None:
        raise MaevaeError(f"dataset {data.name} has no labels: clustering accuracy and the "
                          "probes need labelled training and test images")
    if pool == "train+val" and data.val_y is None and len(data.val_x):
        raise MaevaeError(f"dataset {data.name} has no validation labels: use pool='train'")
    val_y = data.val_y if data.val_y is not None else np.zeros(0, np.int64)
    train_y = data.train_y if pool == "train" else np.concatenate([data.train_y, val_y])
    test_y = data.test_y
    n_pool, n_test = int(train_y.size), int(test_y.size)
    plan = fit_to_sizes(labels, ks, data.sizes(), pool)
    budgets, ks = plan.labels, plan.ks
    validate_budgets(budgets, train_y, balanced)
    eval_path = run.path / EVAL_FILE
    read_results(eval_path, missing_ok=True)  # a bad eval.json fails now, not after the work
    threads = cfg.train.num_threads if num_threads is None else num_threads
    for note in plan.notes:
        log(f"note: {note}")

    timings: dict = {"torch_threads": int(threads or torch.get_num_threads()),
                     "cpu_count": os.cpu_count(),
                     "load_avg_start": round(os.getloadavg()[0], 2)
                     if hasattr(os, "getloadavg") else None}
    with _thread_limit(threads):
        # 1. codes
        arrays, info = run_codes(run.path, device=device, latent=latent, progress=progress,
                                 log=log, _loaded=(run, cfg, model, best, data))
        timings["encode_s"] = round(info["encode_s"], 2)
        timings["codes_cached"] = info["cached"]
        timings["encoded_images"] = info["images"]
        if info["images_per_s"]:
            timings["encode_images_per_s"] = round(info["images_per_s"], 1)
        tr = arrays["train_codes"] if pool == "train" else np.concatenate(
            [arrays["train_codes"], arrays["val_codes"]])
        te = arrays["test_codes"]
        # 2. clustering
        n_fits = len(ks) * runs + (0 if len(np.unique(train_y)) in ks else runs)
        log(f"clustering: K-means K={', '.join(map(str, ks))} x {runs} run(s) on {n_pool} "
            f"training codes (n_init {n_init}), scored on {n_test} test codes")
        bar = console.bar(n_fits, "K-means", progress, unit="fit")
        t0 = time.perf_counter()
        clustering = clustering_suite(tr, train_y, te, test_y, ks=ks, runs=runs, seed=seed,
                                      n_init=n_init, on_run=lambda r: bar.update(1))
        bar.close()
        timings["clustering_s"] = round(time.perf_counter() - t0, 2)
        timings["clustering_per_k_s"] = {k: round(e["wall_time_s"], 2)
                                         for k, e in clustering["kmeans"].items()}
        for k, e in clustering["kmeans"].items():
            log(f"  K={k}: test accuracy {100 * e['acc_test']['mean']:.1f} ± "
                f"{100 * e['acc_test']['std']:.1f} % (nearest sample), "
                f"{100 * e['acc_test_majority']['mean']:.1f} % (majority), NMI "
                f"{e['nmi_test']['mean']:.3f}; {fmt_s(e['wall_time_s'])}")
        # 3. probes
        classifiers = [c for c in CLASSIFIERS if c != "svm_linear_libsvm"]
        log(f"probes: {', '.join(classifiers)} with {', '.join(map(str, budgets))} labels "
            f"({'class-balanced' if balanced else 'uniform'}, {runs} draw(s); 'all' once)")
        n_cells = len(classifiers) * len(budgets)
        bar = console.bar(n_cells, "probes", progress, unit="probe")

        def on_result(name: str, key: str, entry: dict) -> None:
            bar.update(1)
            log(f"  {name:<10} {key:>5} labels: {100 * entry['acc_test']['mean']:.1f} ± "
                f"{100 * entry['acc_test']['std']:.1f} %; {fmt_s(entry['time_s']['mean'])} "
                f"per run" + ("" if entry["converged"] else " [not converged]"))

        t0 = time.perf_counter()
        probes = probe_suite(tr, train_y, te, test_y, budgets=budgets, runs=runs, seed=seed,
                             classifiers=classifiers, balanced=balanced, on_result=on_result)
        bar.close()
        timings["probes_s"] = round(time.perf_counter() - t0, 2)
        timings["probe_fit_predict_s"] = {
            name: {key: round(e["time_s"]["mean"], 3) for key, e in per.items()}
            for name, per in probes["results"].items()}
        # 4. diagnostics on the test set
        log(f"diagnostics: KL per dimension, active units, I(x;z) ({mi_samples} samples per "
            f"code) and MPD / STD on {n_test} test codes ...")
        t0 = time.perf_counter()
        mu, logvar = arrays["test_mu"], arrays["test_logvar"]
        kl_per_dim = diag.kl_per_dim_standard_normal(mu, logvar)
        t_mi = time.perf_counter()
        mi = diag.mutual_information(mu, logvar, n_samples=mi_samples, seed=seed)
        t_mi = time.perf_counter() - t_mi
        mpd_std = diag.pairwise_mpd_std(mu, logvar, batch=512)
        diagnostics = {
            "active_units": diag.active_units(mu),
            "active_threshold": 0.01,
            "latent_dim": int(mu.shape[1]),
            "mu_variance_per_dim": [float(v) for v in diag.posterior_mean_variance(mu)],
            "kl_per_dim": [float(v) for v in kl_per_dim],
            "kl_sum": float(kl_per_dim.sum()),
            "mutual_information": mi.value,
            "mutual_information_stderr": mi.stderr,
            "mutual_information_bound": math.log(mu.shape[0]),
            "mutual_information_samples": int(mi_samples),
            "mpd_512": mpd_std.mpd,
            "std_512": mpd_std.std,
            "images": int(mu.shape[0]),
            "inputs": "test images thresholded at 0.5" if cfg.data.binarize
            else "test images scaled to [-1, 1]",
        }
        timings["diagnostics_s"] = round(time.perf_counter() - t0, 2)
        timings["mutual_information_s"] = round(t_mi, 2)
        log(f"diagnostics: {diagnostics['active_units']}/{mu.shape[1]} active units, "
            f"I(x;z) {mi.value:.2f} ± {mi.stderr:.2f} nats (bound log N = "
            f"{diagnostics['mutual_information_bound']:.2f}), MPD {fmt_stat(mpd_std.mpd)}, STD "
            f"{fmt_stat(mpd_std.std)} (batches of 512); {fmt_s(timings['diagnostics_s'])}")

        settings = {"latent": latent, "latent_description": LATENT_TITLES[latent],
                    "inputs": diagnostics["inputs"].replace("test ", ""), "runs": int(runs),
                    "labels": [str(b) for b in budgets], "balanced": bool(balanced),
                    "ks": ks, "pool": pool, "n_train_codes": n_pool, "n_test_codes": n_test,
                    "seed": int(seed), "n_init": int(n_init), "codes_file": info["file"],
                    "model_sha256": best.get("sha256"), "model_step": best.get("step"),
                    "model_epoch": best.get("epoch"), "defaults_dropped": plan.notes}
        ev = read_results(eval_path, missing_ok=True)
        if ev.dataset is None:
            ev.dataset = data.name
        if ev.data_notes is None:
            ev.data_notes = list(data.notes)
        added = {"clustering": clustering, "probes": probes, "diagnostics": diagnostics,
                 "probe_settings": settings}
        # figures: replaced below ({} when figures=False); probe_timings: the old ones until then
        ev.representation = dataclasses.replace(ev.representation, **added, figures=None)
        write_results(eval_path, ev)

        # 5. figures
        figs: dict[str, str] = {}
        if figures:
            figs, fig_times = draw_figures(run.path, cfg, model, data, device, arrays,
                                            kl_per_dim, latent, n_samples, n_recon,
                                            tsne_points, tsne_iter, log, autocast,
                                            progress)
            timings["figures_s"] = fig_times
        added["figures"] = figs
        timings["total_s"] = round(time.perf_counter() - t_start, 2)
        added["probe_timings"] = timings
        ev = read_results(eval_path)  # the numbers written above (and anything newer)
        ev.representation = dataclasses.replace(ev.representation, **added)
        write_results(eval_path, ev)

    # 6. report
    report = run_report(run, cfg, ev.to_dict(), figs, best)
    atomic_write_text(run.path / "report.md", report)
    log(f"wrote {eval_path}, {run.path / 'report.md'}"
        + (f" and {len(figs)} figures" if figs else "")
        + f" in {fmt_s(timings['total_s'])}")
    return added
