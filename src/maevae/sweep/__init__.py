"""``maevae sweep SWEEP.yaml``: a grid of presets × overrides × seeds, trained, evaluated and
gathered into one table.

:mod:`~maevae.sweep.spec` reads and validates the sweep file and expands it into runs;
:mod:`~maevae.sweep.execute` runs each one as ``maevae train`` then ``maevae eval``
subprocesses (resumable, parallel, signal-safe); :mod:`~maevae.sweep.table` writes
``results.md`` / ``results.csv`` and the figures; :mod:`~maevae.sweep.jobarray` writes a
SLURM job-array script. See ``docs/sweeps.md``.
"""

__all__: list[str] = []
