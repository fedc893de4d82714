"""The dataset registry: every dataset fact has one owner, and its users agree with it.

The reference behaviour (what cli.py, evaluate/runner.py and config.py did before they read the
registry) is written out here: the tests fail if the registry or its users drift from it.
"""

import ast
import itertools
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import maevae.data as data_pkg
from maevae.config import DataConfig, from_dict
from maevae.data import registry
from maevae.data.omniglot import SPLIT_N_VAL
from maevae.data.splits import MNIST_SPLITS
from maevae.errors import ConfigError, DataError

SRC = Path(__file__).resolve().parents[1] / "src" / "maevae"

NAMES = ("mnist", "fashion_mnist", "digits", "omniglot", "omniglot_mat", "cifar10", "folder")


def test_names_and_one_spec_per_dataset():
    assert tuple(registry.DATASETS) == NAMES
    assert data_pkg.DATASETS == NAMES
    assert set(data_pkg._LOADERS) == set(NAMES)
    for name, spec in registry.DATASETS.items():
        assert spec.name == name and spec.label and spec.description
        assert spec.default_split == spec.splits[0] == "mae"
        assert {c.option for c in spec.config_fields} <= set(spec.options)


def test_config_literals_are_the_registry_names():
    hints = typing.get_type_hints(DataConfig)
    assert typing.get_args(hints["name"]) == tuple(registry.DATASETS)
    assert typing.get_args(hints["split"]) == registry.all_splits() == (
        "mae", "iwae", "classic", "authors")
    with pytest.raises(ConfigError, match=r"data.name: unknown value 'foo'; allowed: 'mnist'"):
        from_dict({"data": {"name": "foo"}})


def test_splits_match_the_loaders():
    for name in ("mnist", "fashion_mnist"):
        assert registry.DATASETS[name].splits == tuple(MNIST_SPLITS)
    for name in ("omniglot", "omniglot_mat"):
        assert registry.DATASETS[name].splits == tuple(SPLIT_N_VAL)


def test_downloadable_and_options():
    assert {n for n, s in registry.DATASETS.items() if s.downloadable} == {
        "mnist", "fashion_mnist", "omniglot", "cifar10"}
    assert registry.DATASETS["omniglot"].options == (
        "fortran", "label", "test_fraction", "test_split_seed", "cache_dir")
    assert registry.DATASETS["omniglot_mat"].options == ("fortran",)
    assert registry.DATASETS["folder"].options == (
        "path", "channels", "image_size", "test_fraction", "val_fraction")
    for name in ("mnist", "fashion_mnist", "digits", "cifar10"):
        assert registry.DATASETS[name].options == ()


def test_get_spec_unknown():
    with pytest.raises(DataError, match="unknown dataset 'imagenet'; allowed: mnist, "):
        registry.get_spec("imagenet")


# --- image_shape: the same as cli.image_shape_for wherever that needs no image files ------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("binarize", [True, False])
@pytest.mark.parametrize("image_size", [None, [12, 10]])
def test_image_shape_matches_cli(name, binarize, image_size):
    from maevae.cli import image_shape_for

    data = {"name": name, "binarize": binarize}
    if name == "folder" and image_size is not None:
        data["image_size"] = image_size
    decoder = {} if binarize else {"type": "pixelcnnpp"}
    cfg = from_dict({"data": data, "model": {"decoder": decoder}})
    got = registry.image_shape(name, binarize, cfg.data.image_size)
    if name == "folder" and cfg.data.image_size is None:
        assert got is None  # the CLI reads the size from the files
    else:
        assert got == image_shape_for(cfg)
    known = {"mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "omniglot": (1, 28, 28),
             "omniglot_mat": (1, 28, 28), "digits": (1, 8, 8), "cifar10": (3, 32, 32)}
    if name in known:
        assert got == known[name]


# --- loader_options: exactly what load_run_data passed before the registry -------------------
_OPTION_SETS = {
    "mnist": [{}],
    "fashion_mnist": [{}],
    "digits": [{}],
    "cifar10": [{"binarize": False}],
    "omniglot": [{}, {"omniglot_fortran": True}, {"label": "character"},
                 {"test_fraction": 0.3}, {"omniglot_fortran": True, "label": "alphabet",
                                          "test_fraction": 0.2}],
    "omniglot_mat": [{}, {"omniglot_fortran": True}],
    "folder": [{}, {"binarize": False}, {"path": "imgs"}, {"image_size": [8, 6]},
               {"test_fraction": 0.2}, {"path": "/abs/x", "image_size": [4, 4],
                                        "test_fraction": 0.5, "binarize": False}],
}
_CASES = [(n, o) for n, sets in _OPTION_SETS.items() for o in sets]


def _config(name, opts):
    data = {"name": name, **opts, **({"n_val": 7} if name != "folder" else {})}
    decoder = {"type": "pixelcnnpp"} if data.get("binarize") is False else {}
    return from_dict({"seed": 3, "data": data, "model": {"decoder": decoder}})


def _old_options(d) -> dict:
    """What ``load_run_data`` built by hand before the registry (maevae fc594bd), written out."""
    opts: dict = {}
    if d.name in ("omniglot", "omniglot_mat"):
        opts["fortran"] = d.omniglot_fortran
    if d.name == "omniglot":
        if d.label is not None:
            opts["label"] = d.label
        if d.test_fraction is not None:
            opts["test_fraction"] = d.test_fraction
    if d.name == "folder":
        opts["channels"] = 1 if d.binarize else 3
        if d.path is not None:
            opts["path"] = d.path
        if d.image_size is not None:
            opts["image_size"] = tuple(d.image_size)
        if d.test_fraction is not None:
            opts["test_fraction"] = d.test_fraction
    return opts


@pytest.mark.parametrize(("name", "opts"), _CASES, ids=[f"{n}-{i}" for i, (n, _) in
                                                       enumerate(_CASES)])
def test_loader_options_equal_what_the_runner_passed(name, opts, monkeypatch):
    from maevae.runs import load

    seen = {}

    class Loaded:  # load_run_data also requires every split to be non-empty
        def require_nonempty(self):
            seen["required"] = True
            return self

    loaded = Loaded()

    def fake_load_dataset(nm, root, **kwargs):
        seen.update(name=nm, root=root, kwargs=kwargs)
        return loaded

    monkeypatch.setattr(load, "load_dataset", fake_load_dataset)
    cfg = _config(name, opts)
    assert load.load_run_data(cfg, "/data") is loaded and seen["required"]
    kwargs = dict(seen["kwargs"])
    assert (kwargs.pop("split"), kwargs.pop("seed"), kwargs.pop("n_val")) == (
        cfg.data.split, 3, cfg.data.n_val)
    assert kwargs == _old_options(cfg.data)
    assert list(kwargs) == list(_old_options(cfg.data))  # same order too
    assert registry.loader_options(cfg.data) == kwargs


def test_loader_options_duck_typed():
    class D:
        name, binarize, path, image_size, test_fraction = "folder", True, None, [5, 5], None

    assert registry.loader_options(D()) == {"channels": 1, "image_size": (5, 5)}


def test_dataset_help_lists_every_name_as_the_cli_does():
    assert registry.dataset_help() == ", ".join(NAMES)
    from maevae.cli import build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if hasattr(a, "choices") and a.choices]
    helps = [a.help for a in commands.choices["train"]._actions if "--dataset" in a.option_strings]
    text = " ".join(helps[0].split())
    assert registry.dataset_help() in text


# --- config's "only applies to" checks: the same errors as before, field by field ------------
def _old_data_checks(d) -> str | None:
    """config._data_checks as it was before the registry (returns the message)."""
    splits = {"mnist": ("mae", "iwae", "classic"), "fashion_mnist": ("mae", "iwae", "classic"),
              "omniglot": ("mae", "iwae"), "omniglot_mat": ("mae", "iwae"),
              "digits": ("mae",), "cifar10": ("mae",), "folder": ("mae",)}
    if d.split not in splits[d.name]:
        return (f"data.split={d.split!r} does not apply to data.name={d.name!r}; "
                f"allowed: {', '.join(splits[d.name])}")
    for key, name in [("path", "folder"), ("image_size", "folder"), ("label", "omniglot")]:
        if getattr(d, key) is not None and d.name != name:
            return (f"data.{key} only applies to data.name={name!r} (got "
                    f"data.name={d.name!r}); remove data.{key}")
    if d.test_fraction is not None and d.name not in ("folder", "omniglot"):
        return (f"data.test_fraction only applies to data.name='folder' or the "
                f"zip-built 'omniglot' (got {d.name!r}); remove data.test_fraction")
    if d.omniglot_fortran and d.name not in ("omniglot", "omniglot_mat"):
        return (f"data.omniglot_fortran only applies to OMNIGLOT's chardata.mat (got "
                f"data.name={d.name!r}); remove it")
    return None


def test_config_data_checks_unchanged():
    from maevae.config import _data_checks

    extras = [("split", "iwae"), ("split", "classic"), ("path", "p"), ("image_size", [4, 4]),
              ("label", "alphabet"), ("test_fraction", 0.2), ("omniglot_fortran", True)]
    n = 0
    for name in NAMES:
        for k in range(3):
            for combo in itertools.combinations(extras, k):
                d = DataConfig(name=name)
                for key, value in combo:
                    setattr(d, key, value)
                want = _old_data_checks(d)
                if want is None:
                    _data_checks(d)
                else:
                    with pytest.raises(ConfigError) as e:
                        _data_checks(d)
                    assert str(e.value) == want
                    n += 1
    assert n > 100


def test_scoped_fields_are_dataconfig_fields():
    import dataclasses

    fields = {f.name for f in dataclasses.fields(DataConfig)}
    assert set(registry.COMMON_FIELDS) <= fields
    mapped = {c.field for s in registry.DATASETS.values() for c in s.config_fields}
    assert mapped <= fields
    assert set(registry.scoped_fields()) == mapped - set(registry.COMMON_FIELDS)


# --- layering: data/ imports only errors, fsutil and data.*; config stays torch-free --------
def test_data_package_imports_only_allowed_modules():
    allowed = ("maevae.errors", "maevae.fsutil", "maevae.data")
    for path in sorted((SRC / "data").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            for m in mods:
                if m == "maevae" or m.startswith("maevae."):
                    assert m == "maevae.data" or m.startswith(allowed), f"{path.name}: {m}"


def test_importing_config_does_not_import_torch():
    code = "import sys, maevae.config; assert 'torch' not in sys.modules, 'torch'"
    env_path = str(SRC.parent)
    subprocess.run([sys.executable, "-c", code], check=True,
                   env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})


def test_binarize_helpers_still_exported():
    from maevae.data import binarize, dynamic_binarize, fixed_binarized_copies, threshold

    assert dynamic_binarize is binarize.dynamic_binarize
    assert fixed_binarized_copies is binarize.fixed_binarized_copies
    assert threshold is binarize.threshold
    with pytest.raises(AttributeError):
        data_pkg.no_such_thing  # noqa: B018
