"""No command writes over a file that a run owns: the one check of every ``--out``.

:func:`check_output_path` is called by each command that writes a file or folder the user
names (``compare --out``, ``sample --out``, ``reconstruct --out``, ``train --out``,
``run --out``) before any expensive work. The output is compared, symlinks resolved and
hard links recognised (same device and inode), with the files of

* every run directory the command reads, and
* any run directory the output lies inside (a folder holding ``run.json``).

A run owns :data:`RUN_OWNED`: its config, metadata, metrics, checkpoints, best model,
evaluation (``eval.json``, partial IS results, latent-code caches, ``report.md``, figures)
and TensorBoard logs. ``sample`` and ``reconstruct`` may replace their own default output
(``samples.png`` / ``reconstructions.png`` in the run directory; ``allow``). A file output
that is an existing folder is refused too; an existing unrelated file may be replaced.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import Path

from maevae.errors import CheckpointError

__all__ = ["RUN_OWNED", "check_output_path"]

# top-level names (glob patterns) inside a run directory that belong to the run
RUN_OWNED = (
    "config.yaml", "run.json", "metrics.jsonl", "eval.json", "eval_partial.json",
    "eval_partial-*", ".eval_partial*", "checkpoints", "best", ".best.*", "codes-*",
    "report.md", "tensorboard", "samples.png", "reconstructions.png", "tsne.png",
    "kl_per_dim.png", ".*.tmp-*",
)


def _owned(first: str) -> bool:
    return any(fnmatchcase(first, pat) for pat in RUN_OWNED)


def _owned_files(run: Path) -> Iterable[Path]:
    """Every file the run owns (checkpoint folders walked)."""
    try:
        entries = list(run.iterdir())
    except OSError:
        return
    for p in entries:
        if not _owned(p.name):
            continue
        if p.is_dir() and not p.is_symlink():
            yield from (q for q in p.rglob("*") if q.is_file())
        elif p.is_file():
            yield p


def _runs_around(real: Path, runs: Iterable) -> list[Path]:
    found = [Path(os.path.realpath(r)) for r in runs]
    found += [a for a in real.parents if (a / "run.json").is_file()]
    return list(dict.fromkeys(found))


def check_output_path(out: str | Path, runs: Iterable = (), *, allow: Iterable[str] = (),
                      folder: bool = False, what: str = "--out") -> None:
    """CheckpointError (one line naming the output and the owning run) when ``out`` is, or
    lies inside, a file or folder owned by one of ``runs`` or by a run directory ``out`` is
    inside; ``allow``: top-level names of a run that this output may replace. ``folder``:
    the output is a folder to create (``train --out``, ``run --out``), else a file, which
    must not be an existing folder."""
    out = Path(out)
    real = Path(os.path.realpath(out))
    if not folder and real.is_dir():
        raise CheckpointError(f"{what} {out} is a folder; give a file name")
    allow = set(allow)
    for run in _runs_around(real, runs):
        if real == run and not folder:
            raise CheckpointError(f"{what} {out} is the run directory {run}; give a file name")
        try:
            rel = real.relative_to(run)
        except ValueError:
            continue
        if not rel.parts:
            continue
        first = rel.parts[0]
        if _owned(first) and not (len(rel.parts) == 1 and first in allow):
            raise CheckpointError(f"{what} {out} would write over {rel.as_posix()} of the run "
                                  f"{run}; choose an --out outside the run's files")
    if folder or not real.exists():
        return
    try:  # a hard link (or bind mount) to a run's file, under another name
        st = os.stat(real)
    except OSError:
        return
    for run in _runs_around(real, runs):
        for p in _owned_files(run):
            try:
                q = os.stat(p)
            except OSError:
                continue
            if (q.st_dev, q.st_ino) == (st.st_dev, st.st_ino) and p.name not in allow:
                raise CheckpointError(f"{what} {out} is the same file as "
                                      f"{p.relative_to(run).as_posix()} of the run {run}; "
                                      "choose another --out")
