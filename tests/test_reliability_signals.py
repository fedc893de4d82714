"""SIGTERM / SIGINT at random moments, resume, compare bit for bit with an uninterrupted run.

The harness of tests/test_reliability_kill.py (same worker, same slowed-down checkpoint
writes, same moments: ``anytime`` after the handlers are in place — start-up, training,
validation —, ``write`` inside the k-th checkpoint write of a launch, ``after`` shortly after
the k-th checkpoint), but the process gets SIGTERM or SIGINT instead of SIGKILL — or two
signals 30 ms apart — and must stop by itself. Every interrupted launch must

* exit with 128 + the (first) signal: 143 for SIGTERM, 130 for SIGINT;
* print exactly one ``maevae:`` line on stderr (no traceback, no warning), which names the
  signal and, once training has begun, the exact resume command;
* leave no temporary folder or file (``.tmp-*``) in the run directory;

and, after ``maevae train --resume`` (or the original command when stopped before the run
directory was made) until the run ends, the checkpoints, best model and metrics.jsonl must
be byte-identical to those of an uninterrupted run.

CI runs 2 moments per kind (SIGTERM, SIGINT, two signals); the 20-moment versions are
marked slow (``pytest -m slow``).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from test_reliability_kill import (
    POLL_S,
    WORKER,
    _assert_identical,
    _env,
    _reference,
    _sets,
    _wait_for_kill_moment,
)

TERM, INT = signal.SIGTERM, signal.SIGINT
BURST_GAP_S = 0.03

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(),
                                reason="needs /proc (Linux) to see when handlers are in place")


@dataclass
class SignalReport:
    interrupted: int = 0  # launches stopped by a signal
    by_mode: dict = field(default_factory=dict)
    saved: int = 0  # ... whose message says a checkpoint was saved
    mid_state: int = 0  # ... that wrote one on the signal (state between regular checkpoints)
    launches: int = 0


def _catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (maevae's are in place)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    m = re.search(r"^SigCgt:\s*([0-9a-f]+)$", text, re.M)
    return bool(m) and bool(int(m.group(1), 16) >> (sig - 1) & 1)


def _temporaries(run: Path) -> list[Path]:
    if not run.exists():
        return []
    return sorted(p for p in run.rglob("*") if ".tmp-" in p.name)


def _newest_saved_on_signal(run: Path) -> bool:
    import json

    ckpts = sorted((run / "checkpoints").glob("step-*")) if run.exists() else []
    return bool(ckpts) and json.loads((ckpts[-1] / "state.json").read_text()).get(
        "saved_on") == "signal"


def _launch(run: Path, config: str, sets: list[str], out: Path, err: Path) -> subprocess.Popen:
    if (run / "run.json").exists():
        args = ["train", "--resume", str(run), "--no-progress"]
    else:
        args = ["train", config, "--out", str(run), "--no-progress", *sets]
    fo, fe = open(out, "w"), open(err, "w")
    proc = subprocess.Popen([sys.executable, str(WORKER), *args], stdout=fo, stderr=fe,
                            env=_env(), preexec_fn=lambda: signal.signal(INT, signal.SIG_DFL))
    proc.files = (fo, fe)  # type: ignore[attr-defined]
    return proc


def _check_interrupted(rc: int, first: int, err: str, run: Path, what: str) -> bool:
    """The checks of an interrupted launch; True when it says a checkpoint was saved."""
    assert rc == 128 + first, f"{what}: exit code {rc}, not {128 + first}:\n{err}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and len(lines) == 1, f"{what}: stderr is not one line:\n{err}"
    line = lines[0]
    name = signal.Signals(first).name
    saved = f"maevae: interrupted by {name} at step "
    assert line == f"maevae: interrupted by {name}" or (
        line.startswith(saved) and line.endswith(
            f"a checkpoint was saved — continue with `maevae train --resume {run}`")), \
        f"{what}: {line!r}"
    left = _temporaries(run)
    assert not left, f"{what}: temporary files left behind: {left}"
    return line.startswith(saved)


def run_with_signals(tmp: Path, plan: list[tuple[str, tuple[int, ...]]], seed: int,
                     sets: list[str], max_k: int = 3,
                     config: str = "tiny/test") -> tuple[Path, SignalReport]:
    """``plan``: per interruption, the moment (mode) and the signals sent (one, or two
    BURST_GAP_S apart)."""
    rng = random.Random(seed)
    run = tmp / "signalled"
    rep = SignalReport()
    while True:
        rep.launches += 1
        assert rep.launches <= 2 * len(plan) + 5, f"no end after {rep.launches} launches: {rep}"
        out, err = tmp / f"launch-{rep.launches:02d}.out", tmp / f"launch-{rep.launches:02d}.err"
        proc = _launch(run, config, sets, out, err)
        sent: list[int] = []
        try:
            if rep.interrupted < len(plan):
                mode, sigs = plan[rep.interrupted]
                while proc.poll() is None and not _catches(proc.pid, TERM):
                    time.sleep(POLL_S)
                _wait_for_kill_moment(proc, run, mode, rng, max_k)
                for i, s in enumerate(sigs):
                    if i:
                        time.sleep(BURST_GAP_S)
                    if proc.poll() is None:
                        proc.send_signal(s)
                        sent.append(s)
            rc = proc.wait(timeout=900)
        finally:
            for f in proc.files:  # type: ignore[attr-defined]
                f.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        what = f"launch {rep.launches} ({sent and [signal.Signals(s).name for s in sent]})"
        if sent and rc != 0:
            rep.saved += _check_interrupted(rc, sent[0], err.read_text(), run, what)
            rep.mid_state += _newest_saved_on_signal(run)
            rep.interrupted += 1
            rep.by_mode[mode] = rep.by_mode.get(mode, 0) + 1
            continue
        text = out.read_text() + err.read_text()
        assert rc == 0, f"{what} failed (rc {rc}):\n{text[-3000:]}"
        assert "warning" not in text and "Traceback" not in text, f"{what}:\n{text}"
        if rep.interrupted >= len(plan):
            return run, rep
        raise AssertionError(f"the run finished after {rep.interrupted} of {len(plan)} "
                             "interruptions; make it longer")


_REFS: dict[tuple, Path] = {}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    def get(sets: list[str]) -> Path:
        key = tuple(sets)
        if key not in _REFS:
            _REFS[key] = _reference(tmp_path_factory.mktemp("ref"), sets)
        return _REFS[key]
    return get


FAST_SETS = _sets(max_epochs=1, checkpoint_every=3, max_steps=60)


def test_sigterm_sigint_and_bursts_then_resume_is_bit_identical(tmp_path, reference):
    """Six moments in one run: SIGTERM alone during a checkpoint write and after one, SIGINT
    alone after one, and bursts of two 30 ms apart (TERM + TERM after a write, INT + TERM and
    INT + INT during one); the slow tests below send 20 random ones of each kind."""
    plan = [("write", (TERM,)), ("after", (INT,)), ("after", (TERM, TERM)),
            ("write", (INT, TERM)), ("after", (TERM,)), ("write", (INT, INT))]
    run, rep = run_with_signals(tmp_path, plan, seed=12, sets=FAST_SETS, max_k=2)
    print(f"\ninterrupted {rep.interrupted} ({rep.by_mode}, {rep.saved} saved a checkpoint, "
          f"{rep.mid_state} between regular ones), launches {rep.launches}")
    assert rep.interrupted == len(plan)
    _assert_identical(run, reference(FAST_SETS))


SLOW_SETS = _sets(max_epochs=8, checkpoint_every=3)


def _random_plan(seed: int, n: int, kinds: list[tuple[int, ...]]) -> list:
    rng = random.Random(seed)
    return [(rng.choice(["anytime", "write", "after"]), rng.choice(kinds)) for _ in range(n)]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["SIGTERM", "SIGINT", "burst"])
def test_twenty_random_signals_then_resume_is_bit_identical(tmp_path, reference, kind):
    kinds = {"SIGTERM": [(TERM,)], "SIGINT": [(INT,)],
             "burst": [(TERM, TERM), (INT, INT), (TERM, INT), (INT, TERM)]}[kind]
    seed = {"SIGTERM": 143, "SIGINT": 130, "burst": 30}[kind]
    plan = _random_plan(seed, 20, kinds)
    t0 = time.monotonic()
    run, rep = run_with_signals(tmp_path, plan, seed=seed, sets=SLOW_SETS, max_k=8)
    summary = (f"{kind}: interrupted {rep.interrupted}/20 ({rep.by_mode}, {rep.saved} saved a "
               f"checkpoint, {rep.mid_state} between regular ones), launches {rep.launches}, "
               f"{time.monotonic() - t0:.0f} s")
    print("\n" + summary)
    if os.environ.get("MAEVAE_SIGNAL_REPORT"):
        with open(os.environ["MAEVAE_SIGNAL_REPORT"], "a") as f:
            f.write(summary + "\n")
    assert rep.interrupted == 20
    _assert_identical(run, reference(SLOW_SETS))


# ------------------------------------------------------------------ in-process, no subprocess
@pytest.fixture
def restore_handlers():
    """Python's own handlers for the test, the saved ones after it. A shell that starts
    pytest in the background (``cmd &``, ``nohup``) sets SIGINT to SIG_IGN, which maevae
    keeps ignored by design (``signals.installed``), so these tests start from the handlers
    an interactive run has."""
    saved = {s: signal.getsignal(s) for s in (INT, TERM)}
    signal.signal(INT, signal.default_int_handler)
    signal.signal(TERM, signal.SIG_DFL)
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def test_handler_only_records_inside_training_and_defers_writes(restore_handlers):
    from maevae import signals

    with signals.installed():
        assert signals.active() and signals.pending() is None
        with signals.flag_only():
            os.kill(os.getpid(), TERM)
            os.kill(os.getpid(), INT)  # a second one: recorded, the first one counts
            assert signals.pending() == TERM and signals.exit_code() == 143
        assert signals.acknowledge() == TERM and signals.pending() is None
    assert signal.getsignal(TERM) is not signals._handler  # restored
    with signals.installed():  # outside training: KeyboardInterrupt, but not inside a write
        with pytest.raises(KeyboardInterrupt):
            with signals.deferred():
                os.kill(os.getpid(), INT)
                written = True  # reached: the signal waited for the end of the block
        assert written and signals.exit_code() == 130
        os.kill(os.getpid(), INT)  # only the first signal is ever delivered
    with signals.installed(ignore_after_signal=True):
        pass
    assert signal.getsignal(TERM) is not signal.SIG_IGN  # nothing received: restored


def test_handlers_are_not_installed_from_another_thread(restore_handlers):
    import threading

    from maevae import signals

    seen = []
    t = threading.Thread(target=lambda: seen.append(
        (signals.installed().__enter__(), signals.active())))
    t.start()
    t.join()
    assert seen == [(None, False)] and signal.getsignal(TERM) is not signals._handler


def _tiny_trainer(tmp_path, name, digits, sets=()):
    import torch

    from maevae.config import load_config
    from maevae.runs.directory import RunDir
    from maevae.train.trainer import Trainer

    cfg = load_config("tiny/test", ["train.max_epochs=1", "train.checkpoint_every=5",
                                    "train.keep_checkpoints=2", "train.max_steps=30",
                                    "train.log_every=1", *sets])
    run = RunDir(tmp_path / name)
    if not (run.path / "run.json").exists():
        run.create("", {"image_shape": list(digits.image_shape)})
    return Trainer(cfg, digits, run, torch.device("cpu"), progress=False, log=lambda *a: None)


@pytest.fixture(scope="module")
def digits():
    from maevae.data import load_dataset

    return load_dataset("digits")


@pytest.mark.parametrize("where", ["mid-step", "validation"])
def test_signal_mid_step_or_in_validation_checkpoints_a_step_boundary(
        tmp_path, digits, monkeypatch, restore_handlers, where):
    """The user's report: SIGTERM inside step 13 left step 13 with batch / schedule / EMA at
    12. Now the step completes, is logged, and the checkpoint holds one consistent state;
    a signal during validation drops the validation, which is redone after the resume."""
    import json

    import torch

    from maevae import signals
    from maevae.train import trainer as trainer_mod

    sets = ["train.checkpoint_every=7"]  # steps 13 and 30 are not checkpointed anyway
    ref = _tiny_trainer(tmp_path, "ref", digits, sets)
    ref.initialize()
    ref.fit()
    a = _tiny_trainer(tmp_path, "a", digits, sets)
    a.initialize()
    a.save_checkpoint()
    if where == "mid-step":
        real_step = a.schedule.step

        def schedule_step():  # between Adam and the EMA update of step 13
            if a.counters.step == 13:
                os.kill(os.getpid(), TERM)
            real_step()
        monkeypatch.setattr(a.schedule, "step", schedule_step)
    else:
        def stats(*args, progress=None, **kw):
            os.kill(os.getpid(), INT)
            progress(1)  # the first batch's safe point
            raise AssertionError("validation went on after the signal")
        monkeypatch.setattr(trainer_mod, "batch_statistics", stats)
    with pytest.raises(signals.Interrupted) as e:
        a.fit()
    monkeypatch.undo()
    step = 13 if where == "mid-step" else 30
    assert e.value.exit_code == (143 if where == "mid-step" else 130)
    assert f"at step {step};" in str(e.value) and "maevae train --resume" in str(e.value)
    state = json.loads((a.run.checkpoint_path(step) / "state.json").read_text())
    c = state["counters"]
    assert state["saved_on"] == "signal" and c["step"] == c["batch"] == step
    assert state["schedule"]["iters"] == state["ema"]["updates"] == step
    assert not c["epoch_validated"] and c["best_epoch"] == -1
    assert [r["step"] for r in a.run.read_metrics()][-1] == step  # the last step was logged
    b = _tiny_trainer(tmp_path, "a", digits, sets)
    assert b.resume() and b.counters.step == step
    b.fit()
    for part, x, y in (("model", b.model, ref.model), ("ema", b.ema.shadow, ref.ema.shadow)):
        sx, sy = x.state_dict(), y.state_dict()
        assert all(torch.equal(sx[k], sy[k]) for k in sy), part
    assert b.run.read_metrics() == ref.run.read_metrics()
    names = [p.name for p in b.run.checkpoint_paths()]
    assert names == [p.name for p in ref.run.checkpoint_paths()], "the signal's checkpoint stays"


def test_eval_interrupted_exits_with_the_signal_code(tmp_path, monkeypatch, capsys,
                                                      restore_handlers):
    from maevae import cli
    from maevae.evaluate import nll

    def evaluate_run(*a, **k):
        os.kill(os.getpid(), TERM)
        raise AssertionError("not interrupted")
    monkeypatch.setattr(nll, "evaluate_run", evaluate_run)
    with pytest.raises(SystemExit) as e:
        cli.main(["eval", str(tmp_path), "--device", "cpu"])
    assert e.value.code == 143
    assert capsys.readouterr().err == "maevae: interrupted by SIGTERM\n"
    assert signal.getsignal(TERM) is signal.SIG_IGN  # the ending process ignores the next


def test_the_first_signal_to_arrive_counts_even_when_python_handles_it_second(
        restore_handlers):
    """SIGTERM then SIGINT while the main thread is inside one long C call: Python runs the
    handlers afterwards in signal-number order (SIGINT first); the exit code is SIGTERM's."""
    import threading

    import torch

    from maevae import signals

    a = torch.randn(1500, 1500, dtype=torch.float64)

    def send():
        time.sleep(0.05)
        os.kill(os.getpid(), TERM)
        time.sleep(0.005)  # back to back, SIGINT's C handler could run inside SIGTERM's
        os.kill(os.getpid(), INT)
    with signals.installed(), signals.flag_only():
        t = threading.Thread(target=send)
        t.start()
        t0 = time.monotonic()
        torch.linalg.matrix_power(a, 40)  # one C call, well over 50 ms
        busy = time.monotonic() - t0
        t.join()
        assert busy > 0.1, f"the C call took only {busy:.3f} s"
        assert signals.received() == TERM and signals.exit_code() == 143
