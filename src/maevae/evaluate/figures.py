"""Figures for run reports: t-SNE of latent codes (paper Fig. 5), image grids (Figs. 2, 3, 6),
KL per latent dimension, and training curves. Every function writes one PNG and returns its
path. Matplotlib runs with the non-interactive Agg backend (no display needed); figures are
closed after saving so that long evaluation loops do not leak memory.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless, deterministic PNGs

import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402

from maevae.errors import MaevaeError  # noqa: E402

__all__ = [
    "fmt_number",
    "grid_shape",
    "plot_kl_per_dim",
    "plot_training_curves",
    "plot_tsne",
    "reconstruction_canvas",
    "sample_grid_title",
    "save_image_grid",
    "save_reconstruction_grid",
    "save_sample_grid",
]

_DPI = 110


def _to_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensor
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _prepare_path(path) -> str:
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    return path


def fmt_number(x: float, digits: int = 1) -> str:
    """``x`` for a figure title: rounded to ``digits`` decimals, an integer when whole.

    ``fmt_number(19 / 3) == "6.3"``, ``fmt_number(40.0) == "40"``, ``fmt_number(6.96) == "7"``.
    """
    r = round(float(x), digits)
    return str(int(r)) if r == int(r) else f"{r:.{digits}f}"


def _save(fig, path) -> str:
    path = _prepare_path(path)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# t-SNE


def plot_tsne(
    codes,
    labels,
    path,
    seed: int = 65537,
    perplexity: float = 40.0,
    max_points: int = 5000,
    title: str = "t-SNE of latent codes",
    n_iter: int = 1000,
    class_names: Sequence[str] | None = None,
) -> str:
    """Scatter the 2-D t-SNE embedding of ``codes`` [N, D], coloured by ``labels`` [N].

    Defaults follow the authors' script (perplexity 40, seed 65537, 1000 iterations), but
    at most ``max_points`` codes are embedded (a deterministic uniform subsample drawn with
    ``seed``) because Barnes-Hut t-SNE of 70k points takes many minutes on CPU (about 20 s
    for 1,000 points and 36 s for 5,000 on 2 cores; ``n_iter`` >= 250 trades quality for
    time). ``perplexity`` is lowered to (n - 1) / 3 for very small inputs, where
    scikit-learn would refuse it. ``class_names[i]`` is the legend entry of label ``i``
    (e.g. Fashion-MNIST's "T-shirt/top"); without it the legend shows the label values.
    """
    codes = _to_numpy(codes).astype(np.float64)
    labels = _to_numpy(labels)
    if codes.ndim != 2 or labels.shape != (codes.shape[0],) or codes.shape[0] < 3:
        raise MaevaeError(
            f"t-SNE needs codes [N, D] with N >= 3 and one label per code, got codes "
            f"{codes.shape} and labels {labels.shape}"
        )
    n = codes.shape[0]
    if n > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=int(max_points), replace=False))
        codes, labels = codes[idx], labels[idx]
        n = codes.shape[0]
    perp = float(min(perplexity, max(1.0, (n - 1) / 3.0)))
    # scikit-learn >= 1.5 calls the iteration count max_iter, older versions n_iter.
    iters = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"
    emb = TSNE(
        n_components=2, perplexity=perp, init="pca", random_state=seed, learning_rate="auto",
        **{iters: int(n_iter)},
    ).fit_transform(codes)  # [n, 2]
    classes = np.unique(labels)
    cmap = plt.get_cmap("tab10" if classes.size <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    for i, c in enumerate(classes):
        sel = labels == c
        ax.scatter(emb[sel, 0], emb[sel, 1], s=4, alpha=0.7, color=cmap(i % cmap.N),
                   label=_class_label(c, class_names))
    ax.set_title(f"{title} ({n} points, perplexity {fmt_number(perp)})")
    ax.set_xlabel("t-SNE dimension 1")
    ax.set_ylabel("t-SNE dimension 2")
    if classes.size <= 40:
        ax.legend(title="class" if class_names else "label", markerscale=4, fontsize=8,
                  loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return _save(fig, path)


def _class_label(c, class_names: Sequence[str] | None) -> str:
    """``class_names[c]`` for an integer label inside the list, else ``str(c)``."""
    if class_names and isinstance(c, (int, np.integer)) and 0 <= int(c) < len(class_names):
        return str(class_names[int(c)])
    return str(c)


# --------------------------------------------------------------------------------------------
# Image grids


def _check_images(images, name: str = "images") -> np.ndarray:
    images = _to_numpy(images).astype(np.float64)
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise MaevaeError(
            f"{name} must be a float array [N, C, H, W] with C = 1 (grey) or 3 (RGB), got "
            f"shape {images.shape}"
        )
    if not np.all(np.isfinite(images)):
        raise MaevaeError(f"{name} contain NaN or inf: check the decoder outputs")
    return np.clip(images, 0.0, 1.0)


def _default_scale(h: int, w: int) -> int:
    """Integer nearest-neighbour upscale so that a tile is at least ~56 pixels wide."""
    return max(1, math.ceil(56 / max(1, min(h, w))))


def grid_shape(n: int, nrow: int, h: int, w: int, scale: int, pad: int) -> tuple[int, int]:
    """Pixel (height, width) of :func:`save_image_grid`'s PNG.

    ``nrow`` images per row (torchvision's convention), ``ceil(n / nrow)`` rows; tiles of
    ``h*scale`` x ``w*scale`` separated and framed by ``pad`` pixels.
    """
    ncol = min(nrow, n)
    rows = math.ceil(n / nrow)
    return rows * h * scale + (rows + 1) * pad, ncol * w * scale + (ncol + 1) * pad


def _tile(images: np.ndarray, nrow: int, scale: int, pad: int, pad_value: float) -> np.ndarray:
    """[N, C, H, W] -> [H_grid, W_grid, C] canvas."""
    n, c, h, w = images.shape
    up = images.repeat(scale, axis=2).repeat(scale, axis=3)  # [N, C, H*s, W*s]
    hs, ws = h * scale, w * scale
    gh, gw = grid_shape(n, nrow, h, w, scale, pad)
    canvas = np.full((gh, gw, c), pad_value, dtype=np.float64)
    for i in range(n):
        r, col = divmod(i, nrow)
        y0, x0 = pad + r * (hs + pad), pad + col * (ws + pad)
        canvas[y0:y0 + hs, x0:x0 + ws, :] = up[i].transpose(1, 2, 0)
    return canvas


def save_image_grid(
    images, path, nrow: int = 8, scale: int | None = None, pad: int = 1,
    pad_value: float = 0.5, title: str | None = None,
) -> str:
    """Write ``images`` [N, C, H, W] (floats in [0, 1], grey or RGB) as one PNG grid.

    Each image is upscaled by an integer factor with nearest-neighbour repetition (default:
    the smallest factor making tiles >= 56 px, so 8x8 digits become 56x56 and 28x28 become
    56x56) and tiles are separated by ``pad``-pixel mid-grey lines. Without ``title`` the
    PNG has exactly :func:`grid_shape` pixels (no axes), one PNG pixel per canvas pixel;
    with ``title`` the same canvas is drawn by matplotlib under that title.
    """
    images = _check_images(images)
    if int(nrow) < 1 or int(pad) < 0:
        raise MaevaeError(f"image grid needs nrow >= 1 and pad >= 0, got nrow={nrow}, pad={pad}")
    _, c, h, w = images.shape
    scale = _default_scale(h, w) if scale is None else int(scale)
    if scale < 1:
        raise MaevaeError(f"image grid scale must be >= 1, got {scale}")
    canvas = _tile(images, int(nrow), scale, int(pad), float(pad_value))
    if title is not None:
        # axes filling the figure at one canvas pixel per PNG pixel (no resampling blur);
        # the tight bounding box grows to take the title above it
        gh, gw = canvas.shape[:2]
        fig = plt.figure(figsize=(gw / _DPI, gh / _DPI))
        ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
        if c == 1:
            ax.imshow(canvas[:, :, 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            ax.imshow(canvas, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(title)
        return _save(fig, path)
    path = _prepare_path(path)
    if c == 1:
        mpimg.imsave(path, canvas[:, :, 0], cmap="gray", vmin=0.0, vmax=1.0, format="png")
    else:
        mpimg.imsave(path, canvas, format="png")
    return path


def sample_grid_title(run_name: str, dataset: str, n: int, seed: int | None) -> str:
    """The title of a grid of prior samples: which run, which dataset, how many, which seed."""
    seed_text = "" if seed is None else f", seed {seed}"
    return f"{run_name} ({dataset}): {n} samples from the prior{seed_text}"


def save_sample_grid(images, path, run_name: str, dataset: str, seed: int | None,
                     nrow: int | None = None, scale: int | None = None) -> str:
    """:func:`save_image_grid` of prior samples under :func:`sample_grid_title`.

    ``nrow`` defaults to ``ceil(sqrt(N))`` images per row (a square-ish grid).
    """
    images = _check_images(images)
    n = images.shape[0]
    nrow = max(1, math.ceil(math.sqrt(n))) if nrow is None else nrow
    return save_image_grid(images, path, nrow=nrow, scale=scale,
                           title=sample_grid_title(run_name, dataset, n, seed))


def reconstruction_canvas(originals: np.ndarray, recons: Sequence[np.ndarray],
                          pairs_per_row: int, scale: int, pad: int = 1, gap: int = 7,
                          pad_value: float = 0.5, background: float = 1.0) -> np.ndarray:
    """[N, C, H, W] originals and their reconstructions -> one [H_grid, W_grid, C] canvas.

    Image ``i`` and its ``len(recons)`` reconstructions form one group of ``cols = 1 +
    len(recons)`` tiles of ``H*scale`` x ``W*scale``, side by side with ``pad``-pixel
    ``pad_value`` lines between and around them. Groups fill rows of ``g = min(pairs_per_row,
    N)``, ``gap`` ``background`` pixels apart; group ``i`` (row ``r, j = divmod(i, g)``) has
    its tile ``t`` at ``y = pad + r * (H*scale + pad)``, ``x = pad + j * (cols * (W*scale +
    pad) + gap) + t * (W*scale + pad)``, so every group lines up with the groups above it,
    also in a last row that is not full (its empty places are ``background``).
    """
    n, c, h, w = originals.shape
    cols = 1 + len(recons)
    groups = max(1, min(int(pairs_per_row), n))
    rows = math.ceil(n / groups)
    hs, ws = h * scale, w * scale
    block_w = cols * (ws + pad)  # one group's tiles and the pad line after each
    canvas = np.full((pad + rows * (hs + pad), pad + groups * block_w + (groups - 1) * gap, c),
                     background, dtype=np.float64)
    tiles = [originals, *recons]
    for i in range(n):
        r, j = divmod(i, groups)
        y0, x0 = pad + r * (hs + pad), pad + j * (block_w + gap)
        canvas[y0 - pad:y0 + hs + pad, x0 - pad:x0 + block_w, :] = pad_value
        for t, arr in enumerate(tiles):
            x = x0 + t * (ws + pad)
            up = arr[i].repeat(scale, axis=1).repeat(scale, axis=2)  # [C, H*s, W*s]
            canvas[y0:y0 + hs, x:x + ws, :] = up.transpose(1, 2, 0)
    return canvas


def save_reconstruction_grid(
    originals,
    recons,
    path,
    pairs_per_row: int = 8,
    max_images: int = 64,
    title: str = "Reconstructions",
) -> str:
    """Original | reconstruction pairs, like the paper's Fig. 2, with column titles.

    ``originals`` [N, C, H, W]; ``recons`` the same shape, or a dict {model name: array} to
    show several reconstructions per original (e.g. {"MAE": ..., "VLAE": ...}). The first
    ``max_images`` originals are laid out ``pairs_per_row`` groups to a row
    (:func:`reconstruction_canvas`, groups 1/8 of a tile apart); the columns of the top row
    are titled "original" and the model name(s).
    """
    originals = _check_images(originals, "originals")
    if isinstance(recons, Mapping):
        named = [(str(k), _check_images(v, f"reconstructions {k!r}")) for k, v in recons.items()]
    else:
        named = [("reconstruction", _check_images(recons, "reconstructions"))]
    if not named:
        raise MaevaeError("no reconstructions given: pass an array or a non-empty dict")
    for name, rec in named:
        if rec.shape != originals.shape:
            raise MaevaeError(
                f"reconstructions {name!r} have shape {rec.shape} but originals have "
                f"{originals.shape}: pass one reconstruction per original"
            )
    if int(pairs_per_row) < 1:
        raise MaevaeError(f"reconstruction grid needs pairs_per_row >= 1, got {pairs_per_row}")
    n = min(originals.shape[0], int(max_images))
    _, c, h, w = originals.shape
    scale = _default_scale(h, w)
    ws, cols = w * scale, 1 + len(named)
    gap = max(2, ws // 8)
    canvas = reconstruction_canvas(originals[:n], [rec[:n] for _, rec in named],
                                   int(pairs_per_row), scale, pad=1, gap=gap)
    gh, gw = canvas.shape[:2]
    fig = plt.figure(figsize=(gw / _DPI, gh / _DPI))  # one canvas pixel per PNG pixel
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    if c == 1:
        ax.imshow(canvas[:, :, 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(canvas, interpolation="nearest")
    groups = max(1, min(int(pairs_per_row), n))
    col_names = ["original"] + [name for name, _ in named]
    centres = [1 + j * (cols * (ws + 1) + gap) + t * (ws + 1) + ws / 2 - 0.5
               for j in range(groups) for t in range(cols)]
    ax.set_yticks([])
    ax.xaxis.tick_top()
    ax.set_xticks(centres, col_names * groups, rotation=90, fontsize=7)  # 56-px tiles
    ax.tick_params(axis="x", length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    ax.set_title(title)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# Latent statistics and training curves


def plot_kl_per_dim(
    kl,
    path,
    threshold: float = 0.01,
    sort: bool = True,
    title: str = "KL(q(z_d|x) || N(0,1)) per latent dimension",
) -> str:
    """Bar chart of the per-dimension KL ([D], nats), largest first when ``sort``.

    The dashed line marks ``threshold`` (default 0.01, the active-unit threshold of Burda
    et al.; note that their criterion is on Var_x[mu], so the line is a visual guide for
    collapsed dimensions, whose KL is near zero). Bars are labelled with the dimension index.
    """
    kl = _to_numpy(kl).astype(np.float64).reshape(-1)
    if kl.size == 0:
        raise MaevaeError("KL per dimension is empty: pass a [D] array")
    order = np.argsort(-kl, kind="stable") if sort else np.arange(kl.size)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * kl.size + 2.0), 4.0))
    colors = ["tab:blue" if v > threshold else "tab:gray" for v in kl[order]]
    ax.bar(np.arange(kl.size), kl[order], color=colors)
    ax.axhline(threshold, color="tab:red", linestyle="--", label=f"threshold = {threshold:g}")
    ax.set_xticks(np.arange(kl.size), [str(i) for i in order],
                  fontsize=7 if kl.size <= 64 else 5, rotation=90 if kl.size > 32 else 0)
    ax.set_xlim(-0.6, kl.size - 0.4)
    ax.set_xlabel("latent dimension" + (" (sorted by KL)" if sort else ""))
    ax.set_ylabel("KL (nats)")
    above = int(np.sum(kl > threshold))
    ax.set_title(f"{title}\n{above}/{kl.size} dims above threshold, total {kl.sum():.2f} nats")
    ax.legend()
    return _save(fig, path)


_PREFIXES = ("train_", "val_", "test_")
_X_KEYS = ("epoch", "step", "iteration")


def plot_training_curves(
    metrics_rows: Sequence[Mapping],
    path,
    keys: Sequence[str] | None = None,
    title: str = "Training curves",
) -> str:
    """One panel per metric from rows like ``{"epoch": 3, "train_elbo": .., "val_elbo": ..}``.

    The x axis is the first of "epoch", "step", "iteration" found in the rows (else the row
    index). Metrics that differ only by a "train_" / "val_" / "test_" prefix share a panel
    with a legend. ``keys`` restricts the metrics; rows that lack a key (or hold a non-number
    or None) are skipped for that key only; keys absent from every row are ignored.
    """
    rows = [dict(r) for r in metrics_rows]
    if not rows:
        raise MaevaeError("no metric rows to plot: the run has not logged any epoch yet")
    x_key = next((k for k in _X_KEYS if any(k in r for r in rows)), None)

    def is_num(v) -> bool:
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)

    if keys is None:
        seen: list[str] = []
        for r in rows:
            seen.extend(k for k, v in r.items() if k not in seen and k not in _X_KEYS and is_num(v))
        keys = seen
    panels: dict[str, list[str]] = {}
    for k in keys:
        base = next((k[len(p):] for p in _PREFIXES if k.startswith(p)), k)
        if any(k in r and is_num(r[k]) for r in rows):
            panels.setdefault(base, []).append(k)
    if not panels:
        raise MaevaeError("none of the requested metrics appear in the rows: check the key names")
    n = len(panels)
    ncol = min(3, n)
    nrows = math.ceil(n / ncol)
    fig, axes = plt.subplots(nrows, ncol, figsize=(4.6 * ncol, 3.4 * nrows), squeeze=False)
    for ax, (base, ks) in zip(axes.flat, panels.items()):
        for k in ks:
            pts = [
                (r[x_key] if x_key and is_num(r.get(x_key)) else i, r[k])
                for i, r in enumerate(rows) if k in r and is_num(r[k])
            ]
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="." if len(xs) < 50 else None, label=k)
        ax.set_title(base)
        ax.set_xlabel(x_key or "row")
        ax.set_ylabel(base)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
