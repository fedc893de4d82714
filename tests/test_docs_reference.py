"""docs/configuration.md is complete: every config key, every pyproject extra and every
environment variable the code reads is documented there (so the reference cannot rot)."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

from maevae.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "configuration.md").read_text()


def _config_keys(cls: type, prefix: str = "") -> list[str]:
    """Dotted leaf keys of a config dataclass (``train.lr``, ``model.decoder.mode``, ...)."""
    keys: list[str] = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            keys += _config_keys(type(default), f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def _documented_keys(doc: str) -> set[str]:
    """Keys named in the first column of the reference tables, prefixed by their section:
    ``## `train``` makes ``lr`` ``train.lr``; ``## Top-level keys`` adds no prefix."""
    keys: set[str] = set()
    prefix = None  # None: not in a key section
    for line in doc.splitlines():
        if line.startswith("## "):
            section = re.fullmatch(r"## `([a-z_.]+)`", line.strip())
            prefix = f"{section.group(1)}." if section else (
                "" if line.strip() == "## Top-level keys" else None)
        elif prefix is not None and line.startswith("| `"):
            first_cell = line.split("|")[1]
            keys.update(prefix + k for k in re.findall(r"`([a-z_.]+)`", first_cell))
    return keys


def test_config_keys_are_found_by_the_walk():
    keys = _config_keys(RunConfig)
    # one of each kind: top level, a section, a nested section; and no section itself
    assert {"seed", "name", "train.log_every", "model.decoder.nmix"} <= set(keys)
    assert "model.decoder" not in keys and "train" not in keys
    assert len(keys) == len(set(keys)) > 50


def test_every_config_key_is_documented():
    missing = sorted(set(_config_keys(RunConfig)) - _documented_keys(DOC))
    assert not missing, f"docs/configuration.md lacks the config keys {missing}"


def test_every_documented_key_exists():
    unknown = sorted(_documented_keys(DOC) - set(_config_keys(RunConfig)))
    assert not unknown, f"docs/configuration.md documents keys config.py lacks: {unknown}"


def test_every_extra_is_documented():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert {"test", "tensorboard"} <= set(extras)
    for name in extras:
        assert f"pip install -e .[{name}]" in DOC, f"extra [{name}] is not documented"


_ENV_READ = re.compile(r"""(?:environ\.get|environ\[|getenv)\(?\s*["']([A-Z][A-Z0-9_]*)["']""")
_MAEVAE_NAME = re.compile(r"""["'](MAEVAE_[A-Z0-9_]+)["']""")  # e.g. ENV_DATA = "MAEVAE_DATA"


def _env_vars_in_source() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "src" / "maevae").rglob("*.py"):
        text = path.read_text()
        names.update(_ENV_READ.findall(text))
        names.update(_MAEVAE_NAME.findall(text))
    return names


def test_every_environment_variable_is_documented():
    names = _env_vars_in_source()
    # the scan finds both forms: a direct read and a name held in a constant
    assert {"MAEVAE_DEBUG", "WORLD_SIZE", "MAEVAE_DATA", "MAEVAE_MNIST_MIRROR"} <= names
    missing = sorted(n for n in names if f"`{n}`" not in DOC)
    assert not missing, f"docs/configuration.md lacks the environment variables {missing}"
