"""The paper's representation evaluation of a trained run, in one call (``maevae eval --probes``).

:func:`run_probes` takes a run directory and

1. encodes the training, validation and test images with the best (EMA) model
   (:func:`run_codes`): ``mu(x)`` of images thresholded at 0.5 by default, or the authors'
   mean of 50 posterior samples (``latent="mean50"``), or one posterior sample
   (``latent="sample"``) (SPEC §5.1). 8-bit (colour) models see images scaled to [-1, 1].
   The codes are cached in the run directory as ``codes-<latent>.safetensors`` with a JSON
   sidecar keyed by the best model's sha256, the latent mode, the seed and a fingerprint of
   the images, so re-running the probes skips encoding and a new model re-encodes;
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
5. draws four figures into the run directory: ``tsne.png``, ``reconstructions.png``,
   ``samples.png``, ``kl_per_dim.png``;
6. adds ``clustering``, ``probes``, ``diagnostics``, ``figures``, ``probe_timings`` and
   ``probe_settings`` to ``eval.json`` (other keys are kept) and writes ``report.md``.

The "training codes" are, by default, those of the whole training set of the dataset
(``pool="train+val"``: train and validation splits, 60,000 on MNIST as the paper's "all
(60k)"); ``pool="train"`` uses the training split only. Only the images are encoded: the
validation split was used for model selection, never its labels.

:func:`compare_runs` puts several evaluated runs side by side in the paper's layouts (with
the published rows of the matching presets, marked "(paper)"); :func:`probe_section` gives
the clustering / probe / diagnostics tables of several runs for embedding in another report.

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
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from maevae.errors import MaevaeError

__all__ = [
    "DEFAULT_KS",
    "LATENTS",
    "compare_runs",
    "encode_images",
    "paper_key_for",
    "parse_label_budgets",
    "probe_section",
    "run_codes",
    "run_probes",
    "validate_probe_args",
]

LATENTS = ("mu", "mean50", "sample")
LATENT_TITLES = {
    "mu": "posterior mean mu(x)",
    "mean50": "mean of 50 posterior samples",
    "sample": "one posterior sample",
}
POOLS = ("train+val", "train")
DEFAULT_KS = (10, 20, 30)
MEAN_SAMPLES = 50
ENCODE_BATCH = 500
CODES_FORMAT = 1
FIGURE_FILES = {
    "tsne": "tsne.png",
    "reconstructions": "reconstructions.png",
    "samples": "samples.png",
    "kl_per_dim": "kl_per_dim.png",
}
_PAPER_DATASETS = {"mnist": ("mnist",), "omniglot": ("omniglot", "omniglot_mat"),
                   "cifar10": ("cifar10",)}


# ------------------------------------------------------------------------------ arguments
def parse_label_budgets(labels) -> list:
    """``"100,1000,all"`` (or a sequence) -> ``[100, 1000, "all"]``; duplicates dropped.

    Raises a one-line :class:`MaevaeError` for an empty list, a non-number, or a budget < 1.
    """
    if isinstance(labels, str):
        parts: list = [p.strip() for p in labels.split(",")]
        shown = labels
    elif isinstance(labels, (int, np.integer)) and not isinstance(labels, bool):
        parts, shown = [labels], str(labels)
    else:
        parts = list(labels)
        shown = ",".join(str(p) for p in parts)
    hint = "give comma-separated label budgets, e.g. --labels 100,1000,all"
    out: list = []
    for p in parts:
        if isinstance(p, str):
            if not p:
                raise MaevaeError(f"--labels {shown!r}: empty entry; {hint}")
            if p.lower() == "all":
                v = "all"
            else:
                try:
                    v = int(p)
                except ValueError:
                    raise MaevaeError(f"--labels {shown!r}: {p!r} is not a number of labels; "
                                      f"{hint}") from None
        elif isinstance(p, (int, np.integer)) and not isinstance(p, bool):
            v = int(p)
        else:
            raise MaevaeError(f"--labels {shown!r}: {p!r} is not a number of labels; {hint}")
        if v != "all" and v < 1:
            raise MaevaeError(f"--labels {shown}: a label budget must be at least 1 "
                              f"(got {v}); {hint}")
        if v not in out:
            out.append(v)
    if not out:
        raise MaevaeError(f"--labels {shown!r}: no budget given; {hint}")
    return out


def validate_probe_args(latent: str = "mu", runs: int = 5, labels="100,1000,all",
                        ks: Sequence[int] = DEFAULT_KS) -> list:
    """Check the probe options without touching the run; returns the parsed label budgets.

    For command lines: call it before any long evaluation so that ``--labels 0`` or
    ``--runs 0`` fails at once with a one-line :class:`MaevaeError`.
    """
    _check_args(latent, runs, ks)
    return parse_label_budgets(labels)


def _check_args(latent: str, runs, ks) -> list[int]:
    if latent not in LATENTS:
        raise MaevaeError(f"--latent {latent!r}: choose one of {', '.join(LATENTS)}")
    if isinstance(runs, bool) or not isinstance(runs, (int, np.integer)) or runs < 1:
        raise MaevaeError(f"--runs {runs}: use at least 1 run (the paper uses 5)")
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise MaevaeError(f"K-means K={k!r}: use positive integers such as 10, 20, 30")
        out.append(int(k))
    if not out:
        raise MaevaeError("no K-means K given: use e.g. ks=(10, 20, 30)")
    return out


# ------------------------------------------------------------------------------- encoding
def model_inputs(x_u8: np.ndarray, binarize: bool) -> torch.Tensor:
    """uint8 [N, C, H, W] -> model input: thresholded at 0.5 (binary) or scaled to [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(x_u8)).float()
    return (x / 255.0 > 0.5).float() if binarize else x / 127.5 - 1.0


def _unit(x: torch.Tensor, binarize: bool) -> np.ndarray:
    """Model-space images -> floats in [0, 1] for figures."""
    x = x.detach().float().cpu()
    return (x if binarize else (x + 1.0) / 2.0).numpy()


@torch.no_grad()
def encode_images(model, x_u8: np.ndarray, binarize: bool, latent: str = "mu",
                  device: torch.device | None = None, generator: torch.Generator | None = None,
                  batch: int = ENCODE_BATCH, on_batch: Callable[[int], None] | None = None
                  ) -> dict[str, torch.Tensor]:
    """Encode uint8 images [N, C, H, W] in batches; returns float32 CPU tensors.

    ``{"codes": [N, D], "mu": [N, D], "logvar": [N, D]}``. ``codes`` is ``mu`` for
    ``latent="mu"``, the mean of 50 reparameterised samples of q(z|x) for ``"mean50"``
    (= mu + sigma * noise / sqrt(50)) and one sample for ``"sample"`` (drawn with
    ``generator``, which must live on ``device``). ``on_batch(n)`` reports progress.
    """
    device = device or next(model.parameters()).device
    model.eval()
    out: dict[str, list[torch.Tensor]] = {"codes": [], "mu": [], "logvar": []}
    for start in range(0, len(x_u8), batch):
        x = model_inputs(x_u8[start:start + batch], binarize).to(device)
        q = model.encoder(x)
        mu, logvar = q.mu.float().flatten(1), q.logvar.float().flatten(1)  # [B, D]
        if latent == "mu":
            z = mu
        else:
            n = MEAN_SAMPLES if latent == "mean50" else 1
            eps = torch.randn((n, *mu.shape), generator=generator, device=mu.device)
            z = (mu + (0.5 * logvar).exp() * eps).mean(0)  # [B, D]
        out["codes"].append(z.cpu())
        out["mu"].append(mu.cpu())
        out["logvar"].append(logvar.cpu())
        if on_batch is not None:
            on_batch(x.shape[0])
    if not out["codes"]:
        raise MaevaeError("no images to encode: the split is empty")
    return {k: torch.cat(v) for k, v in out.items()}


def _data_fingerprint(data) -> str:
    h = hashlib.sha256()
    for part in ("train", "val", "test"):
        for kind in ("x", "y"):
            a = getattr(data, f"{part}_{kind}")
            if a is None:
                h.update(f"{part}_{kind}:none".encode())
                continue
            a = np.ascontiguousarray(a)
            h.update(f"{part}_{kind}:{a.dtype}:{a.shape}".encode())
            h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _cache_paths(run_path: Path, latent: str) -> tuple[Path, Path]:
    return run_path / f"codes-{latent}.safetensors", run_path / f"codes-{latent}.json"


_CODE_NAMES = ("train_codes", "val_codes", "test_codes", "test_mu", "test_logvar")


def _read_cache(t_path: Path, j_path: Path, key: dict, sizes: dict[str, int]):
    """(arrays, reason): arrays when the cache is valid, else None and why it is not."""
    from safetensors.torch import load as st_load

    from maevae.train.checkpoint import sha256_bytes

    if not t_path.exists() or not j_path.exists():
        return None, "no cache"
    try:
        meta = json.loads(j_path.read_text())
        old = meta.get("key", {})
        if old.get("model_sha256") != key["model_sha256"]:
            return None, "the model changed"
        if old != key:
            return None, "the settings or data changed"
        blob = t_path.read_bytes()
        if sha256_bytes(blob) != meta.get("sha256"):
            return None, "the cache file is corrupt"
        tensors = st_load(blob)
        arrays = {n: tensors[n].numpy() for n in _CODE_NAMES}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, "the cache is unreadable"
    except Exception:  # safetensors raises its own error type for malformed files
        return None, "the cache is unreadable"
    for part, n in sizes.items():
        if arrays[f"{part}_codes"].shape[0] != n:
            return None, "the cache does not match the data"
    return (arrays, meta), ""


def run_codes(run_dir, data_root: str | None = None, device: torch.device | None = None,
              latent: str = "mu", progress: bool = True, log: Callable[[str], None] = print,
              _loaded: tuple | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Latent codes of a run's train / val / test images, from the cache when it is valid.

    Returns ``(arrays, info)``: arrays ``train_codes`` [N_train, D], ``val_codes``,
    ``test_codes``, ``test_mu``, ``test_logvar`` (float32 numpy) and ``info`` = ``{"cached":
    bool, "encode_s": float, "images": int, "images_per_s": float | None, "file": str,
    "reason": str}``. The cache (``codes-<latent>.safetensors`` + ``.json`` in the run
    directory) is valid when the best model's sha256, the latent mode, the seed, the input
    preprocessing and the images are those it was made from, and the file's sha256 matches.
    """
    from maevae.evaluate.runner import load_run_config, load_run_data, load_trained_model
    from maevae.train.checkpoint import RunDir, atomic_write_text, sha256_bytes, tensors_to_bytes

    if latent not in LATENTS:
        raise MaevaeError(f"--latent {latent!r}: choose one of {', '.join(LATENTS)}")
    if _loaded is None:
        from maevae.device import resolve_device

        device = device or resolve_device("auto")
        run = RunDir(run_dir)
        cfg = load_run_config(run)
        model, best = load_trained_model(run, cfg, device)
        data = load_run_data(cfg, data_root)
    else:
        run, cfg, model, best, data = _loaded
        device = device or next(model.parameters()).device
    key = {"format": CODES_FORMAT, "model_sha256": best.get("sha256"), "latent": latent,
           "inputs": "threshold_0.5" if cfg.data.binarize else "scaled_to_[-1,1]",
           "seed": int(cfg.seed), "data": _data_fingerprint(data)}
    t_path, j_path = _cache_paths(run.path, latent)
    sizes = {"train": len(data.train_x), "val": len(data.val_x), "test": len(data.test_x)}
    n_images = sum(sizes.values())
    if key["model_sha256"]:
        hit, reason = _read_cache(t_path, j_path, key, sizes)
        if hit is not None:
            arrays, meta = hit
            log(f"codes: {n_images} {latent} codes from the cache {t_path.name} (encoded in "
                f"{meta.get('encode_s', float('nan')):.1f} s when made)")
            return arrays, {"cached": True, "encode_s": 0.0, "images": n_images,
                            "images_per_s": None, "file": t_path.name, "reason": "cache valid",
                            "encode_s_when_made": meta.get("encode_s")}
    else:
        reason = "the best model has no sha256"
    g = torch.Generator(device=device).manual_seed(int(cfg.seed) + 4)
    bar = tqdm(total=n_images, desc=f"encoding ({latent})", unit="img", disable=not progress,
               leave=False, dynamic_ncols=True)
    t0 = time.perf_counter()
    parts = {}
    for part in ("train", "val", "test"):
        x = getattr(data, f"{part}_x")
        if len(x) == 0:
            d = model.latent_dim if hasattr(model, "latent_dim") else 0
            parts[part] = {k: torch.zeros(0, d) for k in ("codes", "mu", "logvar")}
            continue
        parts[part] = encode_images(model, x, cfg.data.binarize, latent, device, g,
                                    on_batch=bar.update)
    bar.close()
    seconds = time.perf_counter() - t0
    tensors = {"train_codes": parts["train"]["codes"], "val_codes": parts["val"]["codes"],
               "test_codes": parts["test"]["codes"], "test_mu": parts["test"]["mu"],
               "test_logvar": parts["test"]["logvar"]}
    rate = n_images / seconds if seconds > 0 else None
    log(f"codes: encoded {n_images} images ({LATENT_TITLES[latent]}) in {seconds:.1f} s"
        + (f" ({rate:.0f} images/s)" if rate else "") + f" [{reason}] -> {t_path.name}")
    if key["model_sha256"]:
        blob = tensors_to_bytes(tensors)
        tmp = t_path.with_name(f".{t_path.name}.tmp-{os.getpid()}")
        try:
            j_path.unlink(missing_ok=True)
            tmp.write_bytes(blob)
            os.replace(tmp, t_path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise MaevaeError(f"cannot write {t_path}: {e.strerror or e}; check free disk space "
                              "and permissions") from None
        atomic_write_text(j_path, json.dumps({"key": key, "sha256": sha256_bytes(blob),
                                              "encode_s": round(seconds, 3), "sizes": sizes},
                                             indent=1))
    arrays = {k: v.numpy() for k, v in tensors.items()}
    return arrays, {"cached": False, "encode_s": seconds, "images": n_images,
                    "images_per_s": rate, "file": t_path.name, "reason": reason}


# ------------------------------------------------------------------------------ paper keys
def paper_key_for(cfg) -> str | None:
    """The ``paper_numbers`` key of a run's preset, or None when no published row matches.

    The config ``name`` ``<dataset>_<model>`` (e.g. ``mnist_mae_eta1.0_gamma0.5``) maps to
    ``<dataset>/<model>``; the key is used only if the paper has it, the dataset is the
    same, and the objective agrees with the preset (η, γ; free bits for ``vlae_fb``; the
    factorised decoder for ``resnet_vae_af``), so a renamed or overridden run gets no
    paper row.
    """
    from maevae.evaluate.paper_numbers import PAPER

    dataset, sep, model = str(getattr(cfg, "name", "")).partition("_")
    if not sep or dataset not in _PAPER_DATASETS:
        return None
    if cfg.data.name not in _PAPER_DATASETS[dataset]:
        return None
    key = f"{dataset}/{model}"
    if key not in PAPER:
        return None
    o = cfg.objective
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


# ------------------------------------------------------------------------------- the suite
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


def _read_eval_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        out = json.loads(path.read_text())
    except ValueError:
        raise MaevaeError(f"{path} is not valid JSON; delete it and run `maevae eval "
                          f"{path.parent}` again") from None
    if not isinstance(out, dict):
        raise MaevaeError(f"{path} does not hold a JSON object; delete it and run "
                          f"`maevae eval {path.parent}` again")
    return out


def _fmt_s(s: float) -> str:
    return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"


def _validate_budgets(budgets: list, labels: np.ndarray, balanced: bool) -> None:
    from maevae.evaluate.probes import label_subset

    for b in budgets:
        try:
            label_subset(labels, b, np.random.default_rng(0), balanced=balanced)
        except MaevaeError as e:
            raise MaevaeError(f"--labels {b}: {e}") from None


def run_probes(
    run_dir,
    data_root: str | None = None,
    device: torch.device | None = None,
    *,
    latent: str = "mu",
    runs: int = 5,
    labels="100,1000,all",
    progress: bool = True,
    ks: Sequence[int] = DEFAULT_KS,
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
    log: Callable[[str], None] = print,
) -> dict:
    """Clustering, label-budget probes, diagnostics, figures and ``report.md`` for a run.

    Adds ``clustering``, ``probes``, ``diagnostics``, ``figures``, ``probe_timings`` and
    ``probe_settings`` to ``RUN_DIR/eval.json`` (created if missing; other keys are kept),
    writes the four figures and ``report.md`` into the run directory and returns the added
    entries. ``labels`` is ``"100,1000,all"`` or a list; ``runs`` K-means seeds / label
    draws (budget "all" is run once: its classifiers are deterministic); ``ks`` the K-means
    K's; ``balanced`` class-balanced (True) or uniform labelled subsets; ``pool`` which
    images give the training codes (``"train+val"`` = the dataset's whole training set,
    ``"train"`` = the training split only); ``seed`` the first K-means seed and the label
    draws' seed; ``n_init`` K-means restarts; ``figures=False`` skips the figures;
    ``n_samples`` / ``n_recon`` images in the sample / reconstruction grids (autoregressive
    decoders draw them pixel by pixel); ``tsne_points`` / ``tsne_iter`` t-SNE subsample
    size and iterations; ``num_threads`` torch / BLAS / OpenMP threads for the duration
    (default: the run's ``train.num_threads``; 0 = unchanged). Bad input raises a one-line
    :class:`MaevaeError` before any expensive work.
    """
    from maevae.device import autocast, resolve_device
    from maevae.evaluate import diagnostics as diag
    from maevae.evaluate.clustering import clustering_suite
    from maevae.evaluate.probes import CLASSIFIERS, probe_suite
    from maevae.evaluate.runner import load_run_config, load_run_data, load_trained_model
    from maevae.train.checkpoint import RunDir, atomic_write_text

    t_start = time.perf_counter()
    ks = _check_args(latent, runs, ks)
    budgets = parse_label_budgets(labels)
    if pool not in POOLS:
        raise MaevaeError(f"pool {pool!r}: choose one of {', '.join(POOLS)}")
    for name, v in (("n_samples", n_samples), ("n_recon", n_recon)):
        if figures and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise MaevaeError(f"{name}={v!r}: the figures need at least 1 image")
    device = device or resolve_device("auto")
    run = RunDir(run_dir)
    cfg = load_run_config(run)
    model, best = load_trained_model(run, cfg, device)  # raises when there is no model
    data = load_run_data(cfg, data_root)
    if data.train_y is None or data.test_y is None:
        raise MaevaeError(f"dataset {data.name} has no labels: clustering accuracy and the "
                          "probes need labelled training and test images")
    if pool == "train+val" and data.val_y is None and len(data.val_x):
        raise MaevaeError(f"dataset {data.name} has no validation labels: use pool='train'")
    val_y = data.val_y if data.val_y is not None else np.zeros(0, np.int64)
    train_y = data.train_y if pool == "train" else np.concatenate([data.train_y, val_y])
    test_y = data.test_y
    n_pool, n_test = int(train_y.size), int(test_y.size)
    if n_test < 3:
        raise MaevaeError(f"dataset {data.name} has only {n_test} test images: the probes "
                          "and the t-SNE need at least 3")
    too_big = [k for k in ks if k > n_pool]
    if too_big:
        raise MaevaeError(f"K-means K={too_big[0]} is larger than the {n_pool} training codes "
                          f"of {data.name}: use a smaller K")
    _validate_budgets(budgets, train_y, balanced)
    eval_path = run.path / "eval.json"
    _read_eval_json(eval_path)  # a corrupt eval.json fails now, not after the long work
    threads = cfg.train.num_threads if num_threads is None else num_threads

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
        bar = tqdm(total=n_fits, desc="K-means", disable=not progress, leave=False,
                   dynamic_ncols=True)
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
                f"{e['nmi_test']['mean']:.3f}; {_fmt_s(e['wall_time_s'])}")
        # 3. probes
        classifiers = [c for c in CLASSIFIERS if c != "svm_linear_libsvm"]
        log(f"probes: {', '.join(classifiers)} with {', '.join(map(str, budgets))} labels "
            f"({'class-balanced' if balanced else 'uniform'}, {runs} draw(s); 'all' once)")
        n_cells = len(classifiers) * len(budgets)
        bar = tqdm(total=n_cells, desc="probes", disable=not progress, leave=False,
                   dynamic_ncols=True)

        def on_result(name: str, key: str, entry: dict) -> None:
            bar.update(1)
            log(f"  {name:<10} {key:>5} labels: {100 * entry['acc_test']['mean']:.1f} ± "
                f"{100 * entry['acc_test']['std']:.1f} %; {_fmt_s(entry['time_s']['mean'])} "
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
            f"{diagnostics['mutual_information_bound']:.2f}), MPD {mpd_std.mpd:.2f}, STD "
            f"{mpd_std.std:.2f} (batches of 512); {_fmt_s(timings['diagnostics_s'])}")

        settings = {"latent": latent, "latent_description": LATENT_TITLES[latent],
                    "inputs": diagnostics["inputs"].replace("test ", ""), "runs": int(runs),
                    "labels": [str(b) for b in budgets], "balanced": bool(balanced),
                    "ks": ks, "pool": pool, "n_train_codes": n_pool, "n_test_codes": n_test,
                    "seed": int(seed), "n_init": int(n_init), "codes_file": info["file"],
                    "model_sha256": best.get("sha256"), "model_step": best.get("step"),
                    "model_epoch": best.get("epoch")}
        ev = _read_eval_json(eval_path)
        ev.setdefault("dataset", data.name)
        ev.setdefault("data_notes", data.notes)
        added = {"clustering": clustering, "probes": probes, "diagnostics": diagnostics,
                 "probe_settings": settings}
        ev.update(added)
        ev.pop("figures", None)  # replaced below (or dropped when figures=False)
        atomic_write_text(eval_path, json.dumps(ev, indent=2))

        # 5. figures
        figs: dict[str, str] = {}
        if figures:
            figs, fig_times = _draw_figures(run.path, cfg, model, data, device, arrays,
                                            kl_per_dim, latent, n_samples, n_recon,
                                            tsne_points, tsne_iter, log, autocast)
            timings["figures_s"] = fig_times
        added["figures"] = figs
        timings["total_s"] = round(time.perf_counter() - t_start, 2)
        added["probe_timings"] = timings
        ev = _read_eval_json(eval_path)  # the numbers written above (and anything newer)
        ev.update(added)
        atomic_write_text(eval_path, json.dumps(ev, indent=2))

    # 6. report
    report = _run_report(run, cfg, ev, figs, best)
    atomic_write_text(run.path / "report.md", report)
    log(f"wrote {eval_path}, {run.path / 'report.md'}"
        + (f" and {len(figs)} figures" if figs else "")
        + f" in {_fmt_s(timings['total_s'])}")
    return added


def _draw_figures(run_path: Path, cfg, model, data, device, arrays, kl_per_dim, latent: str,
                  n_samples: int, n_recon: int, tsne_points: int, tsne_iter: int, log,
                  autocast) -> tuple[dict[str, str], dict[str, float]]:
    from maevae.evaluate import figures as F

    figs: dict[str, str] = {}
    times: dict[str, float] = {}

    def timed(name: str, fn) -> None:
        t0 = time.perf_counter()
        fn(run_path / FIGURE_FILES[name])
        times[name] = round(time.perf_counter() - t0, 2)
        figs[name] = FIGURE_FILES[name]
        log(f"figure: {FIGURE_FILES[name]} ({_fmt_s(times[name])})")

    te, test_y = arrays["test_codes"], data.test_y
    timed("tsne", lambda p: F.plot_tsne(
        te, test_y, p, max_points=tsne_points, n_iter=tsne_iter,
        title=f"t-SNE of test codes [{LATENT_TITLES[latent]}]"))

    def recon(p):
        x = model_inputs(data.test_x[:n_recon], cfg.data.binarize).to(device)
        with torch.no_grad(), autocast(device, "fp32"):
            r = model.reconstruct(x)
        what = "thresholded test images" if cfg.data.binarize else "test images"
        F.save_reconstruction_grid(_unit(x, cfg.data.binarize), _unit(r, cfg.data.binarize),
                                   p, pairs_per_row=8,
                                   title=f"{what} (original) and greedy reconstructions "
                                         "from z = mu(x)")

    timed("reconstructions", recon)

    def samples(p):
        g = torch.Generator(device=device).manual_seed(int(cfg.seed) + 5)
        with torch.no_grad(), autocast(device, "fp32"):
            x = model.sample(n_samples, generator=g)
        F.save_image_grid(_unit(x, cfg.data.binarize), p,
                          nrow=max(1, math.ceil(math.sqrt(n_samples))),
                          scale=max(1, math.ceil(84 / min(x.shape[-2:]))),
                          title=f"{n_samples} samples from the prior (z ~ p(z), x ~ p(x|z))")

    timed("samples", samples)
    timed("kl_per_dim", lambda p: F.plot_kl_per_dim(
        kl_per_dim, p, title="Test-set mean KL(q(z_d|x) || N(0,1)) per latent dimension"))
    return figs, times


_FIGURE_CAPTIONS = {
    "tsne": "t-SNE of the test codes, coloured by label",
    "reconstructions": "Reconstructions (original | reconstruction)",
    "samples": "Samples from the prior",
    "kl_per_dim": "KL per latent dimension",
}


def _run_report(run, cfg, ev: dict, figs: dict[str, str], best: dict) -> str:
    from maevae.evaluate.report import render_run_report

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
                             {_FIGURE_CAPTIONS[k]: v for k, v in figs.items()}, notes,
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


# ------------------------------------------------------------------------- multi-run tables
def _load_evaluated(run_dir) -> tuple:
    from maevae.evaluate.runner import load_run_config
    from maevae.train.checkpoint import RunDir

    run = RunDir(run_dir)
    cfg = load_run_config(run)  # raises for a folder that is not a run directory
    path = run.path / "eval.json"
    if not path.exists():
        raise MaevaeError(f"{run.path} has no eval.json: evaluate it first with "
                          f"`maevae eval {run.path} --probes`")
    return run, cfg, _read_eval_json(path)


def _names(runs: list, names: Sequence[str] | None) -> list[str]:
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != len(runs):
            raise MaevaeError(f"{len(runs)} runs but {len(names)} names: give one name per run")
        return names
    out = [r.path.name or str(r.path) for r, _, _ in runs]
    if len(set(out)) < len(out):  # same folder names under different parents
        out = [str(r.path) for r, _, _ in runs]
    return out


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
    folder name), each followed by the paper's published row for the run's preset when
    there is one (:func:`paper_key_for`), labelled "(paper)"; then a table saying what
    each row is (folder, config, dataset, training step, latent, runs, paper key).
    """
    from maevae.evaluate.report import render_comparison

    run_dirs, names = _split_named(run_dirs, names)
    loaded = _load_many(run_dirs)
    labels = _names(loaded, names)
    keys = [paper_key_for(cfg) for _, cfg, _ in loaded]
    text = render_comparison([(n, ev) for n, (_, _, ev) in zip(labels, loaded)], keys)
    rows = ["| Model | run directory | config | dataset | best step | latent | probe runs | "
            "NLL samples × images | paper row |", "|---|---|---|---|---:|---|---:|---|---|"]
    for n, (run, cfg, ev), key in zip(labels, loaded, keys):
        st = ev.get("probe_settings", {}) if isinstance(ev.get("probe_settings"), dict) else {}
        nll = (f"{ev.get('nll_samples')} × {ev.get('nll_images')}"
               if ev.get("nll_samples") is not None else "—")
        rows.append(f"| {n} | {run.path} | {cfg.name} | {ev.get('dataset', cfg.data.name)} | "
                    f"{st.get('model_step', '—')} | {st.get('latent', '—')} | "
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
    from maevae.evaluate.report import render_representation_tables

    run_dirs, names = _split_named(run_dirs, names)
    loaded = _load_many(run_dirs)
    for run, _, ev in loaded:
        if "probes" not in ev and "clustering" not in ev:
            raise MaevaeError(f"{run.path}/eval.json has no clustering or probe results: run "
                              f"`maevae eval {run.path} --probes` first")
    labels = _names(loaded, names)
    keys = [paper_key_for(cfg) for _, cfg, _ in loaded]
    return render_representation_tables([(n, ev) for n, (_, _, ev) in zip(labels, loaded)],
                                        keys, level)
