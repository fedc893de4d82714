"""Datasets: loaders that return :class:`ImageSplits`, splits and binarisation.

``load_dataset(name, root, split=..., seed=..., download=..., n_val=..., **options)`` with

=================  ==========================================================================
name               source (under the data root)
=================  ==========================================================================
``mnist``          ``MNIST/raw/`` four IDX files (gz or plain), md5-verified, downloadable
``fashion_mnist``  ``FashionMNIST/raw/`` same layout, structure-verified, downloadable
``digits``         scikit-learn's bundled 8x8 digits (no files, no root needed)
``omniglot``       ``omniglot/chardata.mat`` if present, else ``omniglot-py/*.zip``
``omniglot_mat``   Burda's ``chardata.mat`` only
``cifar10``        ``cifar-10-batches-py/`` python-pickle batches (restricted unpickler)
``folder``         a folder of PNG/JPEG images (option ``path``; default: the root itself)
=================  ==========================================================================

Splits: MNIST-like ``split in {"mae", "iwae", "classic"}`` (see :mod:`maevae.data.splits`);
OMNIGLOT ``{"mae", "iwae"}``; CIFAR-10, digits and folder ``"mae"`` (a seeded hold-out).
"""

from __future__ import annotations

from pathlib import Path

from maevae.data.base import ImageSplits
from maevae.data.binarize import dynamic_binarize, fixed_binarized_copies, threshold
from maevae.data.paths import resolve_data_root, root_is_explicit, user_cache_dir
from maevae.errors import DataError

__all__ = [
    "DATASETS",
    "ImageSplits",
    "dynamic_binarize",
    "fixed_binarized_copies",
    "load_dataset",
    "resolve_data_root",
    "threshold",
    "user_cache_dir",
]

DATASETS = ("mnist", "fashion_mnist", "digits", "omniglot", "omniglot_mat", "cifar10", "folder")
_DOWNLOADABLE = {"mnist", "fashion_mnist", "omniglot", "cifar10"}
_OPTIONS = {
    "mnist": (),
    "fashion_mnist": (),
    "digits": (),
    "omniglot": ("fortran", "label", "test_fraction", "test_split_seed", "cache_dir"),
    "omniglot_mat": ("fortran",),
    "cifar10": (),
    "folder": ("path", "channels", "image_size", "test_fraction", "val_fraction"),
}


def _check_options(name: str, options: dict) -> None:
    allowed = _OPTIONS[name]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise DataError(
            f"unknown option(s) {', '.join(unknown)} for dataset {name}; allowed: "
            f"{', '.join(allowed) if allowed else 'none'}"
        )


def _root_for(name: str, root: str | Path | None, download: bool) -> Path:
    path = resolve_data_root(None if root is None else str(root))
    if path.is_dir():
        return path
    if path.exists():
        raise DataError(f"data root {path} is not a folder; pass --data-root or set MAEVAE_DATA")
    if not root_is_explicit(root) and download and name in _DOWNLOADABLE:
        try:
            path.mkdir(parents=True, exist_ok=True)
            return path
        except OSError as exc:
            raise DataError(
                f"cannot create the data cache {path} ({exc.strerror or exc}); pass --data-root "
                "or set MAEVAE_DATA"
            ) from None
    raise DataError(f"data root {path} does not exist; pass --data-root or set MAEVAE_DATA")


def load_dataset(name: str, root: str | Path | None = None, *, split: str = "mae",
                 seed: int = 524287, download: bool = True, n_val: int | None = None,
                 **options) -> ImageSplits:
    """Load dataset ``name`` (see module docstring) as uint8 [N, C, H, W] train/val/test."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    _check_options(key, options)

    if key == "digits":
        from maevae.data.digits import load_digits_arrays, split_digits

        if split != "mae":
            raise DataError(f"unknown split {split!r} for digits; allowed: mae")
        x, y = load_digits_arrays()
        tr, va, te = split_digits(len(x), seed, n_val)
        notes = ["scikit-learn 8x8 digits (0..16 scaled to 0..255); seeded split "
                 f"{len(tr)}/{len(va)}/{len(te)} (seed {seed})"]
        out = ImageSplits("digits", x[tr], y[tr], x[va], y[va], x[te], y[te], notes)
        return out.validate()

    if key == "folder" and options.get("path") is not None:
        p = Path(str(options["path"])).expanduser()
        if p.is_absolute():
            base = p
        else:
            base = _root_for(key, root, download) / p
        if not base.is_dir():
            raise DataError(f"image folder {base} does not exist; fix data.path")
        from maevae.data.folder import load_folder

        opts = {k: v for k, v in options.items() if k != "path"}
        return _folder(load_folder, base, split, seed, n_val, opts)

    data_root = _root_for(key, root, download)

    if key in ("mnist", "fashion_mnist"):
        from maevae.data.mnist import load_idx_pair
        from maevae.data.splits import split_indices

        parts = load_idx_pair(data_root, key, download=download)
        (x, y), (tx, ty) = parts["train"], parts["test"]
        tr, va = split_indices(len(x), split, seed=seed, n_val=n_val, what=key)
        label = "MNIST" if key == "mnist" else "Fashion-MNIST"
        check = ("md5-verified" if key == "mnist"
                 else "structure-verified (no content checksum known)")
        how = {"mae": f"seeded shuffle (seed {seed}), {len(va)} held out",
               "iwae": f"last {len(va)} training images held out, no shuffle",
               "classic": f"last {len(va)} training images held out, no shuffle"}[split]
        notes = [f"{label} from {data_root} ({check}); split={split}: {how}"]
        return ImageSplits(key, x[tr], y[tr], x[va], y[va], tx, ty, notes).validate()

    if key in ("omniglot", "omniglot_mat"):
        from maevae.data.omniglot import load_omniglot

        source = "mat" if key == "omniglot_mat" else "auto"
        return load_omniglot(data_root, source=source, split=split, seed=seed, n_val=n_val,
                             download=download, **options).validate()

    if key == "cifar10":
        from maevae.data.cifar import load_cifar10_arrays, split_cifar

        x, y, tx, ty = load_cifar10_arrays(data_root, download=download)
        tr, va = split_cifar(len(x), split, seed, n_val)
        notes = [f"CIFAR-10 from {data_root}; seeded hold-out of {len(va)} (seed {seed})"]
        return ImageSplits("cifar10", x[tr], y[tr], x[va], y[va], tx, ty, notes).validate()

    from maevae.data.folder import load_folder

    return _folder(load_folder, data_root, split, seed, n_val, options)


def _folder(load_folder, base: Path, split: str, seed: int, n_val, options) -> ImageSplits:
    if split != "mae":
        raise DataError(f"unknown split {split!r} for folder; allowed: mae")
    return load_folder(base, seed=seed, n_val=n_val, **options).validate()
