"""The ``maevae sweep`` pipeline: load the sweep file, run (or pick) its runs, write the
table and figures, report failures."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from maevae import console
from maevae.errors import MaevaeError
from maevae.sweep.execute import execute
from maevae.sweep.jobarray import write_job_array
from maevae.sweep.spec import SweepSpec, load_sweep
from maevae.sweep.table import write_figures, write_tables

__all__ = ["SweepFailed", "default_out", "run_sweep"]


class SweepFailed(MaevaeError):
    """Some runs failed (the others finished); exit code 1, rerun to retry them."""

    exit_code = 1


def default_out(spec: SweepSpec) -> Path:
    """``runs/sweeps/<name>``."""
    return Path("runs") / "sweeps" / spec.name


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise MaevaeError(f"--out {out} is a file, not a folder; choose another --out")
    anc = out.absolute()
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir() or not os.access(anc, os.W_OK | os.X_OK):
        raise MaevaeError(f"--out {out}: {anc} is not a writable folder; choose a writable "
                          "--out")
    if (out / "run.json").exists():
        raise MaevaeError(f"--out {out} is a run directory, not a sweep folder; choose "
                          "another --out")


def run_sweep(sweep_file: str | Path, out: str | Path | None = None, *,
              sets: list[str] | None = None, seeds: list[int] | None = None, jobs: int = 1,
              threads: int | None = None, devices: list[str] | None = None,
              only_index: int | None = None, table_only: bool = False,
              emit_job_array: str | Path | None = None, job_array_args: list[str] | None = None,
              device: str = "auto", data_root: str | None = None, progress: bool = True,
              log: Callable[[str], None] = console.say) -> Path:
    """Run the sweep ``sweep_file`` into ``out`` (default ``runs/sweeps/<name>``) and write
    its table; returns ``out``. Raises :class:`SweepFailed` listing the failed runs after the
    others finished; see ``docs/sweeps.md`` for the options."""
    if jobs < 1:
        raise MaevaeError(f"--jobs {jobs}: use N >= 1")
    if threads is not None and threads < 1:
        raise MaevaeError(f"--threads {threads}: use T >= 1")
    if threads is None and not devices:  # jobs x threads <= cores: no OpenMP oversubscription
        threads = max(1, (os.cpu_count() or 1) // jobs)
    spec = load_sweep(sweep_file, sets, seeds)
    out = Path(out) if out else default_out(spec)
    _check_out(out)
    n = len(spec.runs)
    if emit_job_array:
        path = write_job_array(Path(emit_job_array), Path(sweep_file), out, n, spec.name,
                               job_array_args or [], threads)
        log(f"wrote {path}: a SLURM array of {n} task(s) (`sbatch {path}`); then "
            f"`maevae sweep {sweep_file} --out {out} --table-only` gathers the table")
        return out
    if table_only and not out.is_dir():
        raise MaevaeError(f"--table-only: {out} does not exist; run the sweep first (or give "
                          "its --out)")
    runs = spec.runs
    if only_index is not None:
        if not 0 <= only_index < n:
            raise MaevaeError(f"--only-index {only_index}: this sweep has runs 0..{n - 1}")
        runs = [spec.runs[only_index]]
    out.mkdir(parents=True, exist_ok=True)
    if not table_only:
        log(f"sweep {spec.name}: {n} run(s) ({len(spec.variants)} variant(s) × "
            f"{n // (len(spec.variants) * len(spec.seeds))} grid point(s) × "
            f"{len(spec.seeds)} seed(s)) in {out}"
            + (f"; run {only_index} only" if only_index is not None else ""))
        outcome = execute(out, runs, spec.eval, jobs=jobs, threads=threads, devices=devices,
                          device=device, data_root=data_root, progress=progress,
                          log=log)
    if only_index is None:
        rows = write_tables(out, spec.name, spec.runs, list(spec.grid))
        write_figures(out, spec.runs)
        done = sum(r["n"] for r in rows)
        log(f"wrote {out / 'results.md'}, {out / 'results.csv'}, {out / 'kl_vs_nll.png'} "
            f"and {out / 'kmeans_vs_nll.png'} ({done} of {n} run(s) evaluated)")
    if not table_only and outcome.failures:
        lines = "; ".join(f.describe() for f in outcome.failures)
        raise SweepFailed(f"{len(outcome.failures)} of {len(runs)} run(s) failed: {lines}; "
                          "fix the cause and run the same command again to retry them")
    return out
