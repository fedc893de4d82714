"""Latent codes of a run's images, encoded once and cached in the run directory.

:func:`run_codes` encodes the training, validation and test images with the best (EMA)
model: ``mu(x)`` of images thresholded at 0.5 by default, or the authors' mean of 50
posterior samples (``latent="mean50"``), or one posterior sample (``latent="sample"``)
(SPEC §5.1). 8-bit (colour) models see images scaled to [-1, 1]. The codes are cached as
``codes-<latent>.safetensors`` with a JSON sidecar keyed by the best model's sha256, the
latent mode, the seed and a fingerprint of the images, so re-running the probes skips
encoding and a new model re-encodes.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as st_load

from maevae import console
from maevae.device import resolve_device
from maevae.errors import MaevaeError
from maevae.inference.encode import LATENTS, encode_images
from maevae.runs.files import atomic_write_bytes, atomic_write_text, sha256_bytes, tensors_to_bytes
from maevae.runs.load import load_run

__all__ = ["CODES_FORMAT", "LATENT_TITLES", "run_codes"]

LATENT_TITLES = {
    "mu": "posterior mean mu(x)",
    "mean50": "mean of 50 posterior samples",
    "sample": "one posterior sample",
}
CODES_FORMAT = 1


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
              latent: str = "mu", progress: bool = True,
              log: Callable[[str], None] = console.say,
              _loaded: tuple | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Latent codes of a run's train / val / test images, from the cache when it is valid.

    Returns ``(arrays, info)``: arrays ``train_codes`` [N_train, D], ``val_codes``,
    ``test_codes``, ``test_mu``, ``test_logvar`` (float32 numpy) and ``info`` = ``{"cached":
    bool, "encode_s": float, "images": int, "images_per_s": float | None, "file": str,
    "reason": str}``. The cache (``codes-<latent>.safetensors`` + ``.json`` in the run
    directory) is valid when the best model's sha256, the latent mode, the seed, the input
    preprocessing and the images are those it was made from, and the file's sha256 matches.
    """
    if latent not in LATENTS:
        raise MaevaeError(f"latent={latent!r}: choose one of {', '.join(LATENTS)}")
    if _loaded is None:
        device = device or resolve_device("auto")
        opened = load_run(run_dir, device)
        run, cfg, model, best = opened.dir, opened.config, opened.model, opened.best
        data = opened.load_data(data_root)
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
    bar = console.bar(n_images, f"encoding ({latent})", progress, unit="img")
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
        j_path.unlink(missing_ok=True)  # the old sidecar must never describe the new file
        atomic_write_bytes(t_path, blob)
        atomic_write_text(j_path, json.dumps({"key": key, "sha256": sha256_bytes(blob),
                                              "encode_s": round(seconds, 3), "sizes": sizes},
                                             indent=1))
    arrays = {k: v.numpy() for k, v in tensors.items()}
    return arrays, {"cached": False, "encode_s": seconds, "images": n_images,
                    "images_per_s": rate, "file": t_path.name, "reason": reason}
