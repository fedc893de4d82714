"""Crash safety: SIGKILL a training run at random moments, resume, compare bit for bit.

A worker (``tests/_workers/train_worker.py``) runs ``maevae train`` in a fresh subprocess
with one torch thread, its checkpoint writes slowed down like a slow disk so that kills land
inside them too. The harness kills it with SIGKILL at seeded random moments of three kinds:

* ``anytime`` — a random delay after the launch (import, data loading, set-up, training);
* ``write``   — while the k-th checkpoint of this launch is being written (half-written file
  in the temporary folder);
* ``after``   — shortly after the k-th checkpoint of this launch was completed (training
  steps, validation, the best-model write);

then continues with ``maevae train --resume`` (or, if the kill came before the run directory
was set up, with the original command) until the run finishes. The final checkpoint, the
best model and metrics.jsonl must be byte-identical to those of an uninterrupted run, and no
launch may ever have needed to fall back from a corrupt checkpoint (writes are atomic).

The fast test (2 kills) runs in CI; the 20-kill test is marked slow (``pytest -m slow``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

WORKER = Path(__file__).parent / "_workers" / "train_worker.py"
SLOW_WRITE_S = 0.02  # per checkpoint file: a kill inside a write is likely, not rare
POLL_S = 0.003


@dataclass
class KillReport:
    kills: int = 0  # SIGKILLs delivered to a live process
    mid_write: int = 0  # ... that left a half-written temporary checkpoint / best folder
    by_mode: dict = field(default_factory=dict)
    launches: int = 0
    logs: list = field(default_factory=list)


def _sets(max_epochs: int, checkpoint_every: int, max_steps: int | None = None) -> list[str]:
    out = ["--set", "train.num_threads=1", "--set", f"train.max_epochs={max_epochs}",
           "--set", f"train.checkpoint_every={checkpoint_every}", "--set", "train.log_every=1",
           "--set", "train.keep_checkpoints=2"]
    return out + (["--set", f"train.max_steps={max_steps}"] if max_steps else [])


def _env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MAEVAE_TEST_SLOW_WRITE=str(SLOW_WRITE_S),
               PYTHONUNBUFFERED="1")
    return env


def _temp_folders(run: Path, pid: int) -> list[Path]:
    """Half-written checkpoint / best-model folders left by process ``pid``."""
    return [*(run / "checkpoints").glob(f".tmp-*-{pid}"), *run.glob(f".best.tmp-{pid}")]


def _ckpt_names(run: Path) -> set[str]:
    ck = run / "checkpoints"
    try:
        return {n for n in os.listdir(ck) if n.startswith("step-")}
    except OSError:
        return set()


def _tmp_steps(run: Path, pid: int) -> set[str]:
    ck = run / "checkpoints"
    try:
        return {n for n in os.listdir(ck) if n.startswith(".tmp-") and n.endswith(f"-{pid}")}
    except OSError:
        return set()


def _wait_for_kill_moment(proc: subprocess.Popen, run: Path, mode: str, rng: random.Random,
                          max_k: int) -> None:
    """Return at the chosen moment (or when the process has exited)."""
    t0 = time.monotonic()
    if mode == "anytime":
        deadline = t0 + rng.uniform(0.1, 4.0)
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(POLL_S)
        return
    k = rng.randint(1, max_k)
    before = _ckpt_names(run)
    seen: set[str] = set()
    while proc.poll() is None:
        if mode == "write":
            seen |= _tmp_steps(run, proc.pid)
        else:
            seen |= _ckpt_names(run) - before
        if len(seen) >= k:
            time.sleep(rng.uniform(0.0, 0.03 if mode == "write" else 0.25))
            return
        time.sleep(POLL_S)


def _launch(run: Path, config: str, sets: list[str], log: Path) -> subprocess.Popen:
    if (run / "run.json").exists():
        args = ["train", "--resume", str(run), "--no-progress"]
    else:  # killed before the run directory was set up: the user repeats the command
        args = ["train", config, "--out", str(run), "--no-progress", *sets]
    f = open(log, "w")  # closed by run_with_kills
    proc = subprocess.Popen([sys.executable, str(WORKER), *args], stdout=f,
                            stderr=subprocess.STDOUT, env=_env())
    proc.log_file = f  # type: ignore[attr-defined]
    return proc


def run_with_kills(tmp: Path, n_kills: int, seed: int, sets: list[str],
                   modes: list[str] | None = None, max_k: int = 3, config: str = "tiny/test",
                   max_launches: int | None = None) -> tuple[Path, KillReport]:
    rng = random.Random(seed)
    run = tmp / "killed"
    rep = KillReport()
    max_launches = max_launches or 2 * n_kills + 5
    while True:
        rep.launches += 1
        assert rep.launches <= max_launches, f"no end after {max_launches} launches: {rep}"
        log = tmp / f"launch-{rep.launches:02d}.log"
        rep.logs.append(log)
        proc = _launch(run, config, sets, log)
        try:
            if rep.kills < n_kills:
                mode = modes[rep.kills % len(modes)] if modes else rng.choice(
                    ["anytime", "write", "after"])
                _wait_for_kill_moment(proc, run, mode, rng, max_k)
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=60)
                    rep.kills += 1
                    rep.by_mode[mode] = rep.by_mode.get(mode, 0) + 1
                    if _temp_folders(run, proc.pid):
                        rep.mid_write += 1
                    continue
            rc = proc.wait(timeout=900)
        finally:
            proc.log_file.close()  # type: ignore[attr-defined]
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out = log.read_text()
        assert rc == 0, f"launch {rep.launches} failed (rc {rc}):\n{out[-3000:]}"
        if rep.kills >= n_kills:
            break
        assert "training stopped" not in out and "already finished" not in out, (
            f"the run finished after only {rep.kills} of {n_kills} kills; make it longer")
    return run, rep


def _reference(tmp: Path, sets: list[str], config: str = "tiny/test") -> Path:
    """The uninterrupted run, in a fresh process like the killed ones (no state shared with
    the test session)."""
    ref = tmp / "reference"
    env = {**_env(), "MAEVAE_TEST_SLOW_WRITE": "0"}
    done = subprocess.run([sys.executable, str(WORKER), "train", config, "--out", str(ref),
                           "--no-progress", *sets], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return ref


def _assert_identical(run: Path, ref: Path) -> None:
    from safetensors.torch import load_file

    last = sorted(p.name for p in (ref / "checkpoints").iterdir() if p.name.startswith("step-"))
    got = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert got == last, f"checkpoints {got} != {last} (stale temporary folders?)"
    for name in last:
        for f in sorted((ref / "checkpoints" / name).iterdir()):
            a, b = (run / "checkpoints" / name / f.name).read_bytes(), f.read_bytes()
            assert a == b, f"{name}/{f.name} differs from the uninterrupted run"
        for part in ("model", "ema"):  # spelled out: the tensors themselves are equal
            ta = load_file(run / "checkpoints" / name / f"{part}.safetensors")
            tb = load_file(ref / "checkpoints" / name / f"{part}.safetensors")
            assert ta.keys() == tb.keys() and all(ta[k].equal(tb[k]) for k in tb)
    for f in ("best/model.safetensors", "best/meta.json", "config.yaml", "metrics.jsonl"):
        assert (run / f).read_bytes() == (ref / f).read_bytes(), f"{f} differs"
    assert not list(run.glob(".best.*")), "stale best-model temporary folders left behind"
    state = json.loads((run / "checkpoints" / last[-1] / "state.json").read_text())
    assert state["counters"]["stopped"].startswith(("max_epochs", "max_steps"))


def _assert_clean_logs(rep: KillReport) -> None:
    for log in rep.logs:
        text = log.read_text()
        assert "warning" not in text, f"{log.name}: a kill left a corrupt checkpoint:\n{text}"
        assert "Traceback" not in text, f"{log.name}:\n{text}"


def test_two_kills_then_resume_is_bit_identical(tmp_path):
    sets = _sets(max_epochs=1, checkpoint_every=3, max_steps=40)
    run, rep = run_with_kills(tmp_path, n_kills=2, seed=1, sets=sets, modes=["write", "after"])
    print(f"\nkills survived: {rep.kills} (mid-write {rep.mid_write}, {rep.by_mode}), "
          f"launches {rep.launches}")
    assert rep.kills == 2
    _assert_clean_logs(rep)
    _assert_identical(run, _reference(tmp_path, sets))


@pytest.mark.slow
def test_twenty_random_kills_then_resume_is_bit_identical(tmp_path):
    sets = _sets(max_epochs=4, checkpoint_every=3)
    run, rep = run_with_kills(tmp_path, n_kills=20, seed=20190506, sets=sets, max_k=8)
    summary = (f"kills survived: {rep.kills} (mid-write {rep.mid_write}, {rep.by_mode}), "
               f"launches {rep.launches}")
    print("\n" + summary)
    report = os.environ.get("MAEVAE_KILL_REPORT")
    if report:
        Path(report).write_text(json.dumps({"kills": rep.kills, "mid_write": rep.mid_write,
                                            "by_mode": rep.by_mode,
                                            "launches": rep.launches}) + "\n")
    assert rep.kills >= 20
    assert rep.mid_write >= 1, "no kill landed inside a checkpoint write"
    _assert_clean_logs(rep)
    _assert_identical(run, _reference(tmp_path, sets))
