"""A built wheel works on its own: installed into a fresh venv outside the checkout, its
``maevae`` finds every preset (package data), prints its version and counts a preset.

Offline: the wheel is built with this interpreter's setuptools (no build isolation), and the
fresh venv sees the dependencies (torch, numpy, ...) through a ``.pth`` file listing the
folders they are installed in. A plain folder in a ``.pth`` does not run that folder's own
``.pth`` files, so an editable maevae there cannot shadow the wheel; the test checks that the
``maevae`` imported is the wheel's.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import maevae

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "src" / "maevae" / "presets"
DEPENDENCIES = ["torch", "numpy", "scipy", "sklearn", "safetensors", "yaml", "tqdm",
                "matplotlib", "PIL"]


def _run(cmd: list, cwd: Path, env: dict) -> str:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def _dependency_dirs() -> list[str]:
    """The site-packages folders the dependencies are imported from here, deduplicated."""
    dirs: list[str] = []
    for name in DEPENDENCIES:
        module = importlib.import_module(name)
        where = str(Path(module.__file__).resolve().parents[1])  # pkg/__init__.py -> site dir
        if where not in dirs:
            dirs.append(where)
    return dirs


def test_built_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # a copy of the sources, so the build leaves no build/ or egg-info in the checkout
    src = tmp_path / "checkout"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(ROOT / "src", src / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", src, "--no-deps", "--no-build-isolation",
          "--no-index", "-q", "-w", tmp_path / "dist"], tmp_path, env)
    (wheel,) = (tmp_path / "dist").glob("maevae-*.whl")
    assert wheel.name == f"maevae-{maevae.__version__}-py3-none-any.whl"

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, env)
    py = venv / "bin" / "python"
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     tmp_path, env).strip())
    (site / "maevae_test_dependencies.pth").write_text("\n".join(_dependency_dirs()) + "\n")
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index",
          "-q", wheel], tmp_path, env)

    work = tmp_path / "elsewhere"  # no configs, no src: only what the wheel installed
    work.mkdir()
    imported = Path(_run([py, "-c", "import maevae; print(maevae.__file__)"], work, env).strip())
    assert imported == site / "maevae" / "__init__.py"
    cli = venv / "bin" / "maevae"
    listed = _run([cli, "info", "--list"], work, env).split()
    in_source = sorted(str(p.relative_to(PRESETS).with_suffix("")) for p in
                       PRESETS.rglob("*.yaml"))
    assert listed == in_source and "mnist/vlae" in listed and len(listed) >= 20
    assert _run([cli, "--version"], work, env) == f"maevae {maevae.__version__}\n"
    out = _run([cli, "info", "mnist/vlae"], work, env)
    assert out.startswith("mnist/vlae: mnist images 1x28x28") and "1,565,570" in out
