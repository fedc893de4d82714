"""The one owner of every dataset fact: names, shapes, splits, options and config mapping.

``DATASETS`` maps each dataset name to a :class:`DatasetSpec`: its human label, image shape
(``None`` for ``folder``: read from the files or the config), the splits it allows (the first is
the default), whether it can be downloaded, the ``load_dataset`` options it takes, which
``DataConfig`` fields apply to it and the loader option each becomes, and a one-line
description. :mod:`maevae.data` (option checks, dispatch) and :mod:`maevae.config` (allowed
names and splits, "only applies to" checks) read it; the CLI and the evaluation runner call
:func:`image_shape`, :func:`loader_options` and :func:`dataset_help`.

This module never imports :mod:`maevae.config`: the ``DataConfig`` mapping works on any object
with the ``DataConfig`` attributes (``name``, ``binarize``, ``path``, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from maevae.data.splits import MNIST_SPLITS
from maevae.errors import DataError

__all__ = [
    "COMMON_FIELDS",
    "DATASETS",
    "ConfigField",
    "DatasetSpec",
    "all_splits",
    "dataset_help",
    "datasets_taking",
    "get_spec",
    "image_shape",
    "loader_options",
    "scoped_field_error",
    "scoped_fields",
]


@dataclass(frozen=True)
class ConfigField:
    """A ``DataConfig`` field a dataset takes, and the ``load_dataset`` option it becomes."""

    field: str  # DataConfig attribute
    option: str  # load_dataset option
    convert: Callable[[Any], Any] | None = None  # config value -> option value
    always: bool = False  # passed even when the field is None (else only when it is set)

    def value(self, data_cfg: Any) -> tuple[bool, Any]:
        """(passed?, option value) for ``data_cfg``."""
        v = getattr(data_cfg, self.field)
        if v is None and not self.always:
            return False, None
        return True, (v if self.convert is None else self.convert(v))


@dataclass(frozen=True)
class DatasetSpec:
    """Everything maevae knows about one dataset before loading it."""

    name: str
    label: str  # human-readable name (messages, notes)
    shape: tuple[int, int, int] | None  # [C, H, W]; None: read from the files / the config
    splits: tuple[str, ...]  # allowed values of ``split``; the first is the default
    downloadable: bool  # load_dataset may create the default data cache and download into it
    options: tuple[str, ...]  # load_dataset keyword options (beyond split/seed/n_val/...)
    config_fields: tuple[ConfigField, ...]  # DataConfig fields -> options (in this order)
    description: str  # one line: where it comes from
    class_names: tuple[str, ...] | None = None  # label i's name; None: the label is its name

    @property
    def default_split(self) -> str:
        """The split a config gets when it names none (the first of ``splits``)."""
        return self.splits[0]


_MNIST_SPLITS = tuple(MNIST_SPLITS)  # ("mae", "iwae", "classic", "authors")
_OMNIGLOT_SPLITS = ("mae", "iwae")  # = maevae.data.omniglot.SPLIT_N_VAL (checked in tests)
_FORTRAN = ConfigField("omniglot_fortran", "fortran", always=True)
_TEST_FRACTION = ConfigField("test_fraction", "test_fraction")


def _channels(binarize: bool) -> int:
    """Folder images: grey for the binary model, RGB for the 8-bit colour model."""
    return 1 if binarize else 3


_SPECS = (
    DatasetSpec("mnist", "MNIST", (1, 28, 28), _MNIST_SPLITS, True, (), (),
                "MNIST/raw/ four IDX files (gz or plain), md5-verified, downloadable"),
    DatasetSpec("fashion_mnist", "Fashion-MNIST", (1, 28, 28), _MNIST_SPLITS, True, (), (),
                "FashionMNIST/raw/ same layout, structure-verified, downloadable",
                ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot")),
    DatasetSpec("digits", "digits", (1, 8, 8), ("mae",), False, (), (),
                "scikit-learn's bundled 8x8 digits (no files, no root needed)"),
    DatasetSpec("omniglot", "OMNIGLOT", (1, 28, 28), _OMNIGLOT_SPLITS, True,
                ("fortran", "label", "test_fraction", "test_split_seed", "cache_dir"),
                (_FORTRAN, ConfigField("label", "label"), _TEST_FRACTION),
                "omniglot/chardata.mat if present, else omniglot-py/*.zip"),
    DatasetSpec("omniglot_mat", "OMNIGLOT", (1, 28, 28), _OMNIGLOT_SPLITS, False,
                ("fortran",), (_FORTRAN,),
                "Burda's chardata.mat only"),
    DatasetSpec("cifar10", "CIFAR-10", (3, 32, 32), ("mae",), True, (), (),
                "cifar-10-batches-py/ python-pickle batches (restricted unpickler)",
                ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck")),
    DatasetSpec("folder", "image folder", None, ("mae",), False,
                ("path", "channels", "image_size", "test_fraction", "val_fraction"),
                (ConfigField("binarize", "channels", _channels, always=True),
                 ConfigField("path", "path"), ConfigField("image_size", "image_size", tuple),
                 _TEST_FRACTION),
                "a folder of PNG/JPEG images (option path; default: the root itself)"),
)

DATASETS: dict[str, DatasetSpec] = {s.name: s for s in _SPECS}

# DataConfig fields every dataset takes (load_dataset arguments or training settings); every
# other field a spec maps is dataset-specific and rejected by the config for other datasets.
COMMON_FIELDS = ("name", "split", "n_val", "test_copies", "binarize")

# Config errors whose wording names the datasets in words; the rest are generated.
# ``{got}`` is the configured data.name.
_SCOPE_ERRORS = {
    "test_fraction": ("data.test_fraction only applies to data.name='folder' or the zip-built "
                      "'omniglot' (got {got!r}); remove data.test_fraction"),
    "omniglot_fortran": ("data.omniglot_fortran only applies to OMNIGLOT's chardata.mat (got "
                         "data.name={got!r}); remove it"),
}
# Order in which the config checks the dataset-specific fields (first error wins).
_SCOPE_ORDER = ("path", "image_size", "label", "test_fraction", "omniglot_fortran")


def get_spec(name: str) -> DatasetSpec:
    """The spec of ``name``; :class:`DataError` listing the names when it is unknown."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}") from None


def all_splits() -> tuple[str, ...]:
    """Every split name some dataset allows, in first-seen order."""
    return tuple(dict.fromkeys(s for spec in DATASETS.values() for s in spec.splits))


def datasets_taking(field: str) -> tuple[str, ...]:
    """Names of the datasets whose config mapping uses DataConfig field ``field``."""
    return tuple(n for n, s in DATASETS.items() if any(c.field == field for c in s.config_fields))


def scoped_fields() -> tuple[str, ...]:
    """DataConfig fields only some datasets take, in the order the config checks them."""
    mapped = dict.fromkeys(c.field for s in DATASETS.values() for c in s.config_fields)
    scoped = [f for f in mapped if f not in COMMON_FIELDS]
    return tuple(sorted(scoped, key=lambda f: (_SCOPE_ORDER.index(f) if f in _SCOPE_ORDER
                                               else len(_SCOPE_ORDER))))


def scoped_field_error(field: str, value: Any, name: str) -> str | None:
    """The config error for DataConfig ``field=value`` under ``data.name=name``, or None.

    A field counts as set when it is neither None nor False.
    """
    if value is None or value is False:
        return None
    takers = datasets_taking(field)
    if name in takers:
        return None
    if field in _SCOPE_ERRORS:
        return _SCOPE_ERRORS[field].format(got=name)
    where = (f"data.name={takers[0]!r}" if len(takers) == 1
             else "data.name in (" + ", ".join(repr(t) for t in takers) + ")")
    return f"data.{field} only applies to {where} (got data.name={name!r}); remove data.{field}"


def image_shape(name: str, binarize: bool, image_size) -> tuple[int, ...] | None:
    """[C, H, W] of ``name`` without loading it: the known shape, or for a folder
    ``(1 if binarize else 3, *image_size)``; None when only the image files can tell."""
    spec = get_spec(name)
    if spec.shape is not None:
        return spec.shape
    if image_size is None:
        return None
    return (_channels(binarize), *image_size)


def loader_options(data_cfg: Any) -> dict:
    """The ``load_dataset`` keyword options for a ``DataConfig``-like object (duck typed)."""
    opts: dict = {}
    for cf in get_spec(data_cfg.name).config_fields:
        passed, value = cf.value(data_cfg)
        if passed:
            opts[cf.option] = value
    return opts


def dataset_help() -> str:
    """The dataset names as the CLI's ``--dataset`` help lists them: ``mnist, ..., folder``."""
    return ", ".join(DATASETS)
