"""Checkpoint integrity, fallback, pruning, leftovers of killed processes, NaN policy.

* A truncated / corrupted / incomplete newest checkpoint is reported in ONE line and the
  previous valid one is used; resuming from it reproduces the lost checkpoint exactly.
* When checkpoints exist but none verifies, resuming is an error (never a silent restart).
* ``train.keep_checkpoints`` is honoured, and a corrupt "newer" checkpoint never pushes valid
  ones out.
* Temporary folders left by a killed process are ignored and cleaned up; a best model caught
  between its two renames is restored.
* Non-finite losses or gradients skip the step and are counted in the metrics; more than
  ``train.max_nonfinite`` in a row stop training with a one-line message (exit code 2 from
  the CLI), keeping the last good checkpoint, from which the run can be resumed.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from conftest import train_tiny_run
from maevae.cli import main as cli_main
from maevae.errors import CheckpointError
from maevae.models.vae import VAE
from maevae.runs.directory import RunDir
from maevae.runs.files import read_signed_json, signed_json


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """tiny/test, 9 steps, a checkpoint every 3: checkpoints 3, 6, 9 are kept."""
    return train_tiny_run(tmp_path_factory.mktemp("ck") / "run", "train.max_steps=9",
                          "train.checkpoint_every=3", "train.log_every=1")


@pytest.fixture
def run(trained, tmp_path) -> Path:
    p = tmp_path / "run"
    shutil.copytree(trained, p)
    return p


def _names(run: Path) -> list[str]:
    return [p.name for p in RunDir(run).checkpoint_paths()]


def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _corrupt(ck: Path, how: str) -> None:
    if how == "truncate-model":
        p = ck / "model.safetensors"
        p.write_bytes(p.read_bytes()[:-7])
    elif how == "flip-ema":
        p = ck / "ema.safetensors"
        b = bytearray(p.read_bytes())
        b[-3] ^= 0x10
        p.write_bytes(bytes(b))
    elif how == "zero-optim":
        p = ck / "optim.safetensors"
        p.write_bytes(b"\0" * p.stat().st_size)
    elif how == "missing-optim":
        (ck / "optim.safetensors").unlink()
    elif how == "missing-state":
        (ck / "state.json").unlink()
    elif how == "truncate-state":
        p = ck / "state.json"
        p.write_text(p.read_text()[:40])
    elif how == "edit-state":  # still valid JSON, one number changed
        p = ck / "state.json"
        s = json.loads(p.read_text())
        s["counters"]["skipped"] += 1
        p.write_text(json.dumps(s, indent=1))
    elif how == "no-checksums":  # crafted: consistent self-checksum, file checksums removed
        p = ck / "state.json"
        s = read_signed_json(p)
        del s["sha256"]
        p.write_bytes(signed_json(s))
    elif how == "path-traversal":  # crafted: a file outside the checkpoint folder
        p = ck / "state.json"
        s = read_signed_json(p)
        s["sha256"]["../../config.safetensors"] = "0" * 64
        p.write_bytes(signed_json(s))
    elif how == "empty-folder":
        shutil.rmtree(ck)
        ck.mkdir()
    else:
        raise ValueError(how)


CORRUPTIONS = {
    "truncate-model": "model.safetensors is truncated or corrupted (checksum mismatch)",
    "flip-ema": "ema.safetensors is truncated or corrupted (checksum mismatch)",
    "zero-optim": "optim.safetensors is truncated or corrupted (checksum mismatch)",
    "missing-optim": "optim.safetensors is missing",
    "missing-state": "state.json missing or corrupt",
    "truncate-state": "state.json missing or corrupt",
    "edit-state": "state.json is corrupted (checksum mismatch)",
    "no-checksums": "no checksums in state.json",
    "path-traversal": "unexpected file '../../config.safetensors'",
    "empty-folder": "state.json missing or corrupt",
}


@pytest.mark.parametrize("how", list(CORRUPTIONS))
def test_corrupt_newest_checkpoint_falls_back_in_one_line(run, how):
    assert _names(run) == ["step-00000003", "step-00000006", "step-00000009"]
    _corrupt(RunDir(run).checkpoint_paths()[-1], how)
    warnings: list[str] = []
    files, state = RunDir(run).load_latest_checkpoint(warn=warnings.append)
    assert state["step"] == 6 and state["counters"]["step"] == 6
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "step-00000009" in warnings[0] and CORRUPTIONS[how] in warnings[0]
    assert "falling back to the previous checkpoint" in warnings[0]
    assert set(files) == {"model", "ema", "optim"}


def test_resume_after_corruption_recreates_the_lost_checkpoint(run, trained, capsys):
    _corrupt(RunDir(run).checkpoint_paths()[-1], "flip-ema")
    capsys.readouterr()
    cli_main(["train", "--resume", str(run), "--no-progress"])
    out, err = capsys.readouterr()
    assert sum("warning" in ln for ln in err.splitlines()) == 1
    assert "resumed at step 6" in out
    for name in ("step-00000009",):
        assert _bytes(run / "checkpoints" / name) == _bytes(trained / "checkpoints" / name)
    assert _bytes(run / "best") == _bytes(trained / "best")
    assert (run / "metrics.jsonl").read_text() == (trained / "metrics.jsonl").read_text()


def test_two_corrupt_checkpoints_fall_back_twice(run):
    for ck in RunDir(run).checkpoint_paths()[1:]:
        _corrupt(ck, "truncate-model")
    warnings: list[str] = []
    _, state = RunDir(run).load_latest_checkpoint(warn=warnings.append)
    assert state["step"] == 3 and len(warnings) == 2


def test_all_corrupt_is_an_error_not_a_silent_restart(run):
    for ck in RunDir(run).checkpoint_paths():
        _corrupt(ck, "truncate-model")
    with pytest.raises(CheckpointError, match="none of the 3 checkpoint"):
        RunDir(run).load_latest_checkpoint(warn=lambda m: None)


def test_no_checkpoint_at_all_means_a_fresh_start(tmp_path):
    rd = RunDir(tmp_path / "r")
    rd.create("", {})
    assert rd.load_latest_checkpoint() is None


def test_keep_last_n_checkpoints(tmp_path):
    out = tmp_path / "k"
    train_tiny_run(out, "train.max_steps=7", "train.checkpoint_every=1",
                   "train.keep_checkpoints=2")
    assert _names(out) == ["step-00000006", "step-00000007"]


def test_corrupt_newer_checkpoint_does_not_push_valid_ones_out(run):
    rd = RunDir(run)
    _corrupt(rd.checkpoint_paths()[-1], "truncate-model")  # step 9 is bad
    files, state = rd.load_latest_checkpoint(warn=lambda m: None)  # step 6
    for step in (7, 8):
        rd.save_checkpoint(step, files, {k: v for k, v in state.items()
                                         if k not in ("step", "sha256")}, keep=1)
    assert _names(run) == ["step-00000008", "step-00000009"]
    assert rd.load_latest_checkpoint(warn=lambda m: None)[1]["step"] == 8


def test_resaving_a_step_replaces_it_atomically(run):
    rd = RunDir(run)
    files, state = rd.load_latest_checkpoint()
    body = {k: v for k, v in state.items() if k not in ("step", "sha256")}
    before = _bytes(run / "checkpoints" / "step-00000009")
    rd.save_checkpoint(9, files, body, keep=3)
    assert _bytes(run / "checkpoints" / "step-00000009") == before
    assert not list((run / "checkpoints").glob(".*"))  # no temporary or moved-aside copy


def test_leftovers_of_a_killed_process_are_ignored_and_cleaned(run):
    rd = RunDir(run)
    ck = run / "checkpoints"
    half = ck / ".tmp-step-00000012-999999"  # killed while writing step 12
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"\x08\x00")
    old = ck / ".old-step-00000009-999999"  # killed while re-saving step 9
    shutil.copytree(ck / "step-00000009", old)
    assert rd.load_latest_checkpoint(warn=pytest.fail)[1]["step"] == 9
    files, state = rd.load_latest_checkpoint()
    rd.save_checkpoint(10, files, {k: v for k, v in state.items()
                                   if k not in ("step", "sha256")}, keep=3)
    assert not half.exists() and not old.exists()


def test_best_model_caught_between_renames_is_restored(run):
    rd = RunDir(run)
    best_before = _bytes(run / "best")
    (run / "best").rename(run / ".best.old-999999")  # killed after the first rename
    (run / ".best.tmp-999999").mkdir()  # ... with its new best half-written
    files, state = rd.load_latest_checkpoint()
    rd.save_checkpoint(10, files, {k: v for k, v in state.items()
                                   if k not in ("step", "sha256")}, keep=3)
    assert _bytes(run / "best") == best_before
    assert not list(run.glob(".best*"))


def test_interrupted_create_can_be_reused_but_a_foreign_folder_cannot(tmp_path, capsys):
    left = tmp_path / "left"
    (left / "checkpoints").mkdir(parents=True)
    (left / "config.yaml").write_text("half")
    (left / ".run.json.tmp-4242").write_text("{")
    RunDir(left).check_new()  # killed before run.json: no run there yet
    foreign = tmp_path / "foreign"
    (foreign / "checkpoints").mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="is not empty"):
        RunDir(foreign).check_new()
    (left / "run.json").write_text("{}")
    with pytest.raises(CheckpointError, match="is not empty"):
        RunDir(left).check_new()


# --------------------------------------------------------------------------- NaN policy
def _poison_after(monkeypatch, n_good: int, what: str = "loss"):
    """From the (n_good+1)-th forward pass on, the loss (or the gradients) are non-finite."""
    real = VAE.forward
    calls = {"n": 0}

    def forward(self, *a, **k):
        t = real(self, *a, **k)
        if self.training:
            calls["n"] += 1
            if calls["n"] > n_good:
                if what == "loss":
                    t.recon = t.recon * float("nan")
                else:  # a finite loss whose gradient is infinite
                    t.recon = _inf_grad(t.recon)
        return t

    monkeypatch.setattr(VAE, "forward", forward)
    return calls


class _InfGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * math.inf


def _inf_grad(x):
    return _InfGrad.apply(x)


@pytest.mark.parametrize("what", ["loss", "grad"])
def test_non_finite_run_stops_in_one_line_and_keeps_last_good_checkpoint(
        tmp_path, monkeypatch, capsys, what):
    out = tmp_path / "nan"
    argv = ["train", "tiny/test", "--out", str(out), "--no-progress", "--set",
            "train.num_threads=1", "--set", "train.checkpoint_every=4", "--set",
            "train.max_nonfinite=3", "--set", "train.log_every=1", "--set", "train.max_steps=30"]
    _poison_after(monkeypatch, 10, what)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli_main(argv)
    _, err = capsys.readouterr()
    monkeypatch.undo()
    assert e.value.code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("maevae: error: 4 non-finite"), err
    assert "last good checkpoint is kept" in lines[0]
    # steps 11.. are non-finite: the 4th in a row (step 14) stops; step 12 was checkpointed
    # (weights of step 10, nothing applied since)
    rd = RunDir(out)
    files, state = rd.load_latest_checkpoint(warn=pytest.fail)
    assert state["counters"]["step"] == 12 and state["counters"]["skipped"] == 2
    assert all(torch.isfinite(v).all() for part in files.values() for v in part.values())
    ten = [r for r in rd.read_metrics() if r["kind"] == "train"]
    assert [r["step"] for r in ten] == list(range(1, 11))  # skipped steps are not logged...
    # ...but counted: resuming without the fault continues from the good checkpoint
    capsys.readouterr()
    cli_main(["train", "--resume", str(out), "--no-progress"])
    rows = rd.read_metrics()
    assert rows[-1]["kind"] == "val" and rows[-1]["skipped"] == 2
    assert [r["step"] for r in rows if r["kind"] == "train"][-1] == 30


def test_isolated_non_finite_steps_are_skipped_and_counted(tmp_path, monkeypatch):
    out = tmp_path / "some"
    real = VAE.forward
    n = {"i": 0}

    def forward(self, *a, **k):
        t = real(self, *a, **k)
        if self.training:
            n["i"] += 1
            if n["i"] in (3, 7, 8):
                t.kl = t.kl * float("inf")
        return t

    monkeypatch.setattr(VAE, "forward", forward)
    train_tiny_run(out, "train.max_nonfinite=2", "train.log_every=1", "train.max_steps=12")
    rows = RunDir(out).read_metrics()
    train = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 4, 5, 6, 9, 10, 11, 12]
    assert train[-1]["skipped"] == 3 and rows[-1]["skipped"] == 3
    files, state = RunDir(out).load_latest_checkpoint()
    assert state["counters"]["skipped"] == 3 and state["counters"]["consecutive_skipped"] == 0


def test_edited_best_meta_is_detected(run):
    p = run / "best" / "meta.json"
    meta = json.loads(p.read_text())
    meta["epoch"] += 1  # valid JSON, one number changed
    p.write_text(json.dumps(meta, indent=1))
    with pytest.raises(CheckpointError, match="meta.json is truncated or corrupted"):
        RunDir(run).load_best()


@pytest.mark.parametrize("edit", ["unknown-counter", "counter-type", "schedule-key",
                                  "no-ema", "optim-groups"])
def test_crafted_state_json_is_refused_in_one_line(run, capsys, edit):
    """A state.json that verifies (re-signed) but holds what maevae never writes."""
    for ck in RunDir(run).checkpoint_paths():
        p = ck / "state.json"
        s = read_signed_json(p)
        if edit == "unknown-counter":
            s["counters"]["rm_rf"] = 1
        elif edit == "counter-type":
            s["counters"]["step"] = "9; import os"
        elif edit == "schedule-key":
            s["schedule"]["lr"] = 1.0  # would shadow the method
        elif edit == "no-ema":
            del s["ema"]
        else:
            s["optim_groups"] = [{"params": [0]}]
        p.write_bytes(signed_json(s))
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli_main(["train", "--resume", str(run), "--no-progress"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert "is not what this maevae writes" in err


def test_checkpoint_caught_between_renames_is_restored_on_resume(run):
    """Killed while re-saving step 9: the old copy was moved aside, the new one not yet in
    place. Resuming puts the old copy back instead of falling back (or starting over)."""
    ck = run / "checkpoints"
    before = _bytes(ck / "step-00000009")
    (ck / "step-00000009").rename(ck / ".old-step-00000009-999999")
    (ck / ".tmp-step-00000009-999999").mkdir()
    warnings: list[str] = []
    _, state = RunDir(run).load_latest_checkpoint(warn=warnings.append)
    assert state["step"] == 9 and warnings == []
    assert _bytes(ck / "step-00000009") == before and not list(ck.glob(".*"))
