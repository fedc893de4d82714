"""``maevae sweep --emit-job-array FILE``: a SLURM job-array script, one task per run.

Task ``i`` runs ``maevae sweep SWEEP.yaml --out DIR --only-index i`` (resumable like any
sweep: a requeued task continues its run); ``maevae sweep SWEEP.yaml --out DIR
--table-only`` gathers the table afterwards. No scheduler of our own.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from maevae.runs.files import atomic_write_text

__all__ = ["job_array_script", "write_job_array"]


def job_array_script(sweep_file: Path, out: Path, n_runs: int, name: str,
                     extra_args: list[str], threads: int | None = None) -> str:
    """The bash script of a SLURM array ``0..n_runs-1`` over the sweep's runs."""
    args = " ".join(shlex.quote(a) for a in extra_args)
    cmd = (f"maevae sweep {shlex.quote(str(sweep_file))} --out {shlex.quote(str(out))}"
           + (f" {args}" if args else ""))
    cpus = f"#SBATCH --cpus-per-task={threads}\n" if threads else ""
    return f"""#!/bin/bash
# SLURM job array for the maevae sweep {name!r}: {n_runs} run(s), one per task.
# Submit with: sbatch {{this file}}   (edit the #SBATCH lines for your cluster)
#SBATCH --job-name=maevae-{name}
#SBATCH --array=0-{n_runs - 1}
#SBATCH --output={shlex.quote(str(out))}/logs/slurm-%A_%a.out
{cpus}#SBATCH --requeue
set -euo pipefail
mkdir -p {shlex.quote(str(out))}/logs
# each task trains and evaluates run number $SLURM_ARRAY_TASK_ID (resumed when requeued)
{cmd} --only-index "$SLURM_ARRAY_TASK_ID" --no-progress
# when all tasks are done, gather the table and figures:
#   {cmd} --table-only
"""


def write_job_array(path: Path, *args, **kwargs) -> Path:
    """Write :func:`job_array_script` to ``path`` (executable); returns ``path``."""
    atomic_write_text(path, job_array_script(*args, **kwargs))
    path.chmod(0o755)
    return path
