"""Datasets: loaders that return :class:`ImageSplits`, splits and binarisation.

``load_dataset(name, root, split=..., seed=..., download=..., n_val=..., **options)`` with
``name`` one of the datasets in :mod:`maevae.data.registry`, the one owner of every dataset
fact (names, sources, shapes, splits, options, the ``DataConfig`` mapping): see
``registry.DATASETS[name].description`` for where each reads its files from (under the data
root). Splits are documented in :mod:`maevae.data.splits`.

The binarisation helpers (torch) are imported on first use, so that importing
:mod:`maevae.data.registry` (as :mod:`maevae.config` does) stays free of torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from maevae.data import registry
from maevae.data.base import ImageSplits
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

DATASETS = tuple(registry.DATASETS)  # the names, in the registry's order

_BINARIZE = ("dynamic_binarize", "fixed_binarized_copies", "threshold")


def __getattr__(name: str):
    if name in _BINARIZE:
        from maevae.data import binarize

        return getattr(binarize, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_options(name: str, options: dict) -> None:
    allowed = registry.DATASETS[name].options
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise DataError(
            f"unknown option(s) {', '.join(unknown)} for dataset {name}; allowed: "
            f"{', '.join(allowed) if allowed else 'none'}"
        )


def _check_split(name: str, split: str) -> None:
    allowed = registry.DATASETS[name].splits
    if split not in allowed:
        raise DataError(f"unknown split {split!r} for {name}; allowed: {', '.join(allowed)}")


def _root_for(name: str, root: str | Path | None, download: bool) -> Path:
    path = resolve_data_root(None if root is None else str(root))
    if path.is_dir():
        return path
    if path.exists():
        raise DataError(f"data root {path} is not a folder; pass --data-root or set MAEVAE_DATA")
    if not root_is_explicit(root) and download and registry.DATASETS[name].downloadable:
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
    if key not in registry.DATASETS:
        raise DataError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    _check_options(key, options)
    from maevae.data.download import missing_folders, remove_empty

    created = missing_folders(resolve_data_root(None if root is None else str(root)))
    try:
        data = _LOADERS[key](key, root, split, seed, download, n_val, options)
    except BaseException:
        remove_empty(created)  # e.g. the default cache made for a download that failed
        raise
    if data.class_names is None and registry.DATASETS[key].class_names is not None:
        data.class_names = list(registry.DATASETS[key].class_names)
    return data


# One loader per dataset: (key, root, split, seed, download, n_val, options) -> ImageSplits.
# Each imports its module on first use.

def _load_digits(key, root, split, seed, download, n_val, options) -> ImageSplits:
    from maevae.data.digits import load_digits_arrays, split_digits

    _check_split(key, split)
    x, y = load_digits_arrays()
    tr, va, te = split_digits(len(x), seed, n_val)
    notes = ["scikit-learn 8x8 digits (0..16 scaled to 0..255); seeded split "
             f"{len(tr)}/{len(va)}/{len(te)} (seed {seed})"]
    return ImageSplits("digits", x[tr], y[tr], x[va], y[va], x[te], y[te], notes).validate()


def _load_mnist_like(key, root, split, seed, download, n_val, options) -> ImageSplits:
    from maevae.data.mnist import idx_files, load_idx_pair
    from maevae.data.splits import split_indices

    data_root = _root_for(key, root, download)
    parts = load_idx_pair(data_root, key, download=download)
    (x, y), (tx, ty) = parts["train"], parts["test"]
    tr, va = split_indices(len(x), split, seed=seed, n_val=n_val, what=key)
    label = registry.DATASETS[key].label
    check = ("md5-verified" if key == "mnist"
             else "structure-verified (no content checksum known)")
    how = {"mae": f"seeded shuffle (seed {seed}), {len(va)} held out",
           "iwae": f"last {len(va)} training images held out, no shuffle",
           "classic": f"last {len(va)} training images held out, no shuffle",
           "authors": f"the MAE authors' split (last {len(va)} of np.random.seed(524287) "
                      "shuffle), seed not used"}[split]
    notes = [f"{label} from {data_root} ({check}); split={split}: {how}"]
    files = idx_files(data_root, key)
    return ImageSplits(key, x[tr], y[tr], x[va], y[va], tx, ty, notes, data_root,
                       files).validate()


def _load_omniglot(key, root, split, seed, download, n_val, options) -> ImageSplits:
    from maevae.data.omniglot import load_omniglot

    data_root = _root_for(key, root, download)
    source = "mat" if key == "omniglot_mat" else "auto"
    return load_omniglot(data_root, source=source, split=split, seed=seed, n_val=n_val,
                         download=download, **options).validate()


def _load_cifar10(key, root, split, seed, download, n_val, options) -> ImageSplits:
    from maevae.data.cifar import batch_files, load_cifar10_arrays, split_cifar

    data_root = _root_for(key, root, download)
    x, y, tx, ty = load_cifar10_arrays(data_root, download=download)
    tr, va = split_cifar(len(x), split, seed, n_val)
    notes = [f"CIFAR-10 from {data_root}; seeded hold-out of {len(va)} (seed {seed})"]
    return ImageSplits("cifar10", x[tr], y[tr], x[va], y[va], tx, ty, notes, data_root,
                       batch_files(data_root)).validate()


def _load_folder(key, root, split, seed, download, n_val, options) -> ImageSplits:
    from maevae.data.folder import load_folder

    data_root = None  # an absolute data.path uses no root (config.yaml records the path)
    if options.get("path") is not None:
        p = Path(str(options["path"])).expanduser()
        if not p.is_absolute():
            data_root = _root_for(key, root, download)
        base = p if data_root is None else data_root / p
        if not base.is_dir():
            raise DataError(f"image folder {base} does not exist; fix data.path")
        options = {k: v for k, v in options.items() if k != "path"}
    else:
        base = data_root = _root_for(key, root, download)
    _check_split(key, split)
    data = load_folder(base, seed=seed, n_val=n_val, **options)
    data.root = data_root
    return data.validate()


_LOADERS: dict[str, Callable[..., ImageSplits]] = {
    "mnist": _load_mnist_like,
    "fashion_mnist": _load_mnist_like,
    "digits": _load_digits,
    "omniglot": _load_omniglot,
    "omniglot_mat": _load_omniglot,
    "cifar10": _load_cifar10,
    "folder": _load_folder,
}
