"""Where datasets live: ``--data-root``, else ``$MAEVAE_DATA``, else the user cache folder."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_DATA", "resolve_data_root", "root_is_explicit", "user_cache_dir"]

ENV_DATA = "MAEVAE_DATA"


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/maevae`` when XDG_CACHE_HOME is set, else ``~/.cache/maevae``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "maevae").absolute()


def root_is_explicit(cli_root: str | Path | None) -> bool:
    """True when the user chose the root (flag or environment), not the default cache."""
    return cli_root is not None or bool(os.environ.get(ENV_DATA, "").strip())


def resolve_data_root(cli_root: str | Path | None) -> Path:
    """The data root: ``cli_root`` (``--data-root``), else ``$MAEVAE_DATA``, else the user cache.

    The path is made absolute (``~`` expanded); whether it exists is checked by the loaders.
    """
    if cli_root is not None and str(cli_root).strip():
        return Path(cli_root).expanduser().absolute()
    env = os.environ.get(ENV_DATA, "").strip()
    if env:
        return Path(env).expanduser().absolute()
    return user_cache_dir()
