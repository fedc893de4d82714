"""Running a sweep's runs: one ``maevae train`` then ``maevae eval`` subprocess pipeline per
run, resumable, ``--jobs N`` at a time (or one per GPU of ``--devices``), signal-safe.

What a run needs is read from its folder (:func:`run_state`): nothing when its
``eval.json`` is complete for the sweep's ``eval:`` settings; the evaluation only when
training finished; ``maevae train --resume`` when it has a run but training did not finish;
a fresh ``maevae train`` otherwise. Each stage appends to ``OUT/logs/<id>.log`` after a line
``== maevae sweep: <stage> ...``. A failed stage (non-zero exit) is reported and the other
runs go on. SIGINT / SIGTERM are forwarded to the running children (training saves a
checkpoint at a step boundary), the sweep waits for them and ends with
:class:`~maevae.signals.Interrupted` (exit 128 + signal).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from maevae import console, signals
from maevae.config import dump_yaml
from maevae.errors import MaevaeError
from maevae.runs.directory import RunDir
from maevae.runs.files import atomic_write_text, read_signed_json
from maevae.runs.results import EVAL_FILE, read_results
from maevae.sweep.spec import RunSpec, SweepEval

__all__ = ["NEW", "RESUME", "EVAL", "DONE", "LOG_MARK", "Failure", "SweepOutcome",
           "config_path", "eval_complete", "execute", "last_error_line", "log_path",
           "run_dir", "run_state"]

NEW, RESUME, EVAL, DONE = "new", "resume", "eval", "done"
LOG_MARK = "== maevae sweep:"
_POLL_S = 0.1


def run_dir(out: Path, run: RunSpec) -> Path:
    """The run's folder: ``OUT/<id>``."""
    return out / run.run_id


def log_path(out: Path, run: RunSpec) -> Path:
    """The run's log: ``OUT/logs/<id>.log`` (every stage appends to it)."""
    return out / "logs" / f"{run.run_id}.log"


def config_path(out: Path, run: RunSpec) -> Path:
    """The run's resolved config, given to ``maevae train``: ``OUT/configs/<id>.yaml``."""
    return out / "configs" / f"{run.run_id}.yaml"


def eval_complete(path: Path, ev: SweepEval) -> bool:
    """Whether ``RUN_DIR/eval.json`` holds what ``ev`` asks for: the likelihood (with
    ``nll_samples`` samples when set) and, with probes, the finished probe results (their
    ``probe_timings`` are written last) for the same latent and number of runs."""
    try:
        res = read_results(path / EVAL_FILE, missing_ok=True)
    except MaevaeError:
        return False
    if res.likelihood.nll is None:
        return False
    if ev.nll_samples is not None and res.likelihood.nll_samples != ev.nll_samples:
        return False
    if ev.probes:
        rep = res.representation
        settings = rep.probe_settings or {}
        if rep.probe_timings is None or rep.clustering is None or rep.probes is None:
            return False
        if settings.get("runs") != ev.probe_runs or settings.get("latent") != ev.latent:
            return False
    return True


def _training_finished(path: Path) -> bool:
    paths = RunDir(path).checkpoint_paths()
    if not paths:
        return False
    try:
        state = read_signed_json(paths[-1] / "state.json")
    except (OSError, ValueError):
        return False  # `maevae train --resume` sorts it out (or says what is wrong)
    counters = state.get("counters")
    return isinstance(counters, dict) and bool(counters.get("stopped"))


def run_state(path: Path, ev: SweepEval) -> str:
    """What the run in folder ``path`` needs: :data:`DONE`, :data:`EVAL`, :data:`RESUME`
    or :data:`NEW`."""
    if not (path / "run.json").exists():
        return NEW  # absent, empty, or a create that was killed before run.json
    if eval_complete(path, ev):
        return DONE
    if _training_finished(path):
        return EVAL
    return RESUME


def _check_same_config(path: Path, run: RunSpec) -> None:
    """A folder that holds a run of another config is never resumed as this one."""
    try:
        have = yaml.safe_load((path / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return  # maevae train --resume reports it
    want = yaml.safe_load(dump_yaml(run.config))
    if not isinstance(have, dict):
        return
    diffs = _diff(have, want, "")
    if diffs:
        key, a, b = diffs[0]
        raise MaevaeError(f"{path} holds a run of another config ({key}: {a!r} there, "
                          f"{b!r} in this sweep); delete that folder or use another --out")


def _diff(a, b, prefix: str) -> list[tuple[str, object, object]]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in list(a) + [k for k in b if k not in a]:
            if k == "path" and prefix == "data.":
                continue  # recorded by train for folder datasets
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [(prefix.rstrip("."), a, b)]


def last_error_line(log: Path) -> str:
    """The last ``maevae: ...`` line of a log, else its last non-empty line."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines()]
    except OSError:
        return "(no log)"
    lines = [ln for ln in lines if ln and not ln.startswith(LOG_MARK)]
    for ln in reversed(lines):
        if ln.startswith("maevae: "):
            return ln
    for ln in reversed(lines):
        if "Error" in ln:
            return ln
    return lines[-1] if lines else "(empty log)"


@dataclass
class Failure:
    """A run whose stage ended with a non-zero exit code (or could not start)."""

    run_id: str
    stage: str
    exit_code: int
    line: str
    log: Path

    def describe(self) -> str:
        """One line: id, stage, exit code, the log's last error line and the log's path."""
        return (f"{self.run_id}: {self.stage} exited with code {self.exit_code}: {self.line} "
                f"(log {self.log})")


@dataclass
class SweepOutcome:
    """What :func:`execute` did: runs already done, finished now, failed."""

    skipped: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


@dataclass
class _Job:
    run: RunSpec
    stages: list[tuple[str, list[str]]]
    slot: int = -1
    proc: subprocess.Popen | None = None
    stage: str = ""


def _stages(out: Path, run: RunSpec, state: str, ev: SweepEval, device: str,
            data_root: str | None) -> list[tuple[str, list[str]]]:
    base = [sys.executable, "-m", "maevae"]
    common = ["--device", device, "--no-progress"]
    if data_root:
        common += ["--data-root", data_root]
    d = str(run_dir(out, run))
    stages = []
    if state == NEW:
        stages.append(("train", base + ["train", str(config_path(out, run)), "--out", d]
                       + common))
    elif state == RESUME:
        stages.append(("train --resume", base + ["train", "--resume", d] + common))
    if state != DONE:
        stages.append(("eval", base + ["eval", d] + ev.eval_args() + common))
    return stages


def _child_env(threads: int | None, device: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(threads)
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    return env


def execute(out: Path, runs: list[RunSpec], ev: SweepEval, *, jobs: int = 1,
            threads: int | None = None, devices: list[str] | None = None,
            device: str = "auto", data_root: str | None = None, progress: bool = True,
            log: Callable[[str], None] = console.say) -> SweepOutcome:
    """Bring every run of ``runs`` to a complete ``eval.json`` in ``out`` (see the module
    docstring); ``jobs`` concurrent runs (``devices``: one per GPU, via
    ``CUDA_VISIBLE_DEVICES``), each child with ``threads`` torch / BLAS threads; without
    ``progress`` only finished and failed runs are logged, not each stage."""
    slots = len(devices) if devices else jobs
    outcome = SweepOutcome()
    queue: list[_Job] = []
    for run in runs:
        path = run_dir(out, run)
        state = run_state(path, ev)
        if state == DONE:
            outcome.skipped.append(run.run_id)
            continue
        if state != NEW:
            try:
                _check_same_config(path, run)
            except MaevaeError as e:
                outcome.failures.append(Failure(run.run_id, "check", 2, str(e),
                                                log_path(out, run)))
                continue
        if state == NEW:
            config_path(out, run).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(config_path(out, run), dump_yaml(run.config))
        queue.append(_Job(run, _stages(out, run, state, ev, device, data_root)))
    if outcome.skipped:
        log(f"{len(outcome.skipped)} of {len(runs)} run(s) already done")
    total = len(queue)
    running: list[_Job] = []
    free = list(range(slots))
    forwarded: int | None = None
    started = 0
    in_cli = signals.active()
    if in_cli:
        signals.record_only()  # a signal is recorded, acted upon in the loop below

    def start_stage(job: _Job) -> None:
        name, argv = job.stages.pop(0)
        job.stage = name
        lp = log_path(out, job.run)
        lp.parent.mkdir(parents=True, exist_ok=True)
        with open(lp, "a") as f:
            f.write(f"{LOG_MARK} {name} {time.strftime('%Y-%m-%dT%H:%M:%S')}: "
                    f"{' '.join(argv[1:])}\n")
            f.flush()
            dev = devices[job.slot] if devices else None
            job.proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL,
                                        env=_child_env(threads, dev))

    while queue or running:
        sig = signals.pending() if in_cli else None
        if sig is not None and forwarded is None:
            forwarded = sig
            log(f"{signals.name(sig)}: stopping {len(running)} running run(s) (training "
                "saves a checkpoint) ...")
            for job in running:
                if job.proc and job.proc.poll() is None:
                    job.proc.send_signal(sig)
        while queue and free and forwarded is None:
            job = queue.pop(0)
            job.slot = free.pop(0)
            started += 1
            where = f" on GPU {devices[job.slot]}" if devices else ""
            if progress:
                log(f"[{started}/{total}] {job.run.run_id}: {job.stages[0][0]}{where}")
            try:
                start_stage(job)
            except OSError as e:
                outcome.failures.append(Failure(job.run.run_id, job.stage, 2,
                                                f"cannot start: {e}", log_path(out, job.run)))
                free.append(job.slot)
                continue
            running.append(job)
        if forwarded is not None:
            queue.clear()
        time.sleep(_POLL_S)
        for job in list(running):
            rc = job.proc.poll()
            if rc is None:
                continue
            if rc == 0 and job.stages and forwarded is None:
                if progress:
                    log(f"      {job.run.run_id}: {job.stages[0][0]}")
                start_stage(job)
                continue
            running.remove(job)
            free.append(job.slot)
            if rc == 0 and not job.stages:
                outcome.finished.append(job.run.run_id)
                log(f"done  {job.run.run_id}")
            elif rc != 0 and not (forwarded is not None and rc == 128 + forwarded):
                f = Failure(job.run.run_id, job.stage, rc, last_error_line(log_path(out, job.run)),
                            log_path(out, job.run))
                outcome.failures.append(f)
                log(f"FAILED {f.describe()}")
    if forwarded is not None:
        signals.acknowledge()
        raise signals.Interrupted(
            f"interrupted by {signals.name(forwarded)}: {len(outcome.finished)} run(s) "
            f"finished now; run the same `maevae sweep` command again to continue "
            "(interrupted runs resume from their checkpoints)", forwarded)
    return outcome
