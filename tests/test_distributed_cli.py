"""`torchrun --nproc-per-node 2 -m maevae train` end to end on CPU (gloo): the global batch of
one process, rank 0 alone writes, and the run resumes on another world size.

Steps are compared one at a time (the loss, its terms and the gradient norm of the step after
the same starting state), not whole trajectories: the two-process all-reduce rounds the
gradient differently, and Adam turns the rounding noise of gradients that are exactly zero in
exact arithmetic (1-element weight-norm rows, MADE-masked weights) into lr-sized steps, so
fp32 trajectories drift apart by ~lr per step while every single step agrees."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

from maevae.runs.directory import RunDir

SETS = ["train.max_steps=20", "train.max_epochs=1", "train.checkpoint_every=10",
        "train.keep_checkpoints=5", "train.num_threads=1", "train.log_every=1"]
TERMS = ("loss", "recon", "kl", "elbo", "mpd", "std", "grad_norm")


def _maevae(args: list[str], nproc: int = 1) -> subprocess.CompletedProcess:
    if nproc == 1:
        cmd = [sys.executable, "-m", "maevae", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(nproc), "-m", "maevae", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _train(out: Path, nproc: int) -> subprocess.CompletedProcess:
    sets = [a for kv in SETS for a in ("--set", kv)]
    return _maevae(["train", "tiny/test", "--out", str(out), "--no-progress",
                    "--compile", "never", *sets], nproc)


def _train_rows(run: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if r["kind"] == "train"]
    assert steps == list(range(1, 21)), steps  # one writer, no duplicates, nothing missing
    return {r["step"]: r for r in rows if r["kind"] == "train"}


def _assert_same_step(a: dict, b: dict) -> None:
    for k in TERMS:
        assert abs(a[k] - b[k]) <= 1e-5 * abs(b[k]) + 1e-6, (k, a[k], b[k])


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_torchrun_two_ranks_train_like_one_process_and_resume_on_one(tmp_path):
    one, two, cont = tmp_path / "one", tmp_path / "two", tmp_path / "cont"
    _train(one, 1)
    res = _train(two, 2)
    assert res.stdout.count("training stopped after 20 steps") == 1  # rank 0 alone logs
    assert [p.name for p in RunDir(two).checkpoint_paths()] == \
        ["step-00000000", "step-00000010", "step-00000020"]
    r1, r2 = _train_rows(one), _train_rows(two)
    # step 1 from the same DDI weights: the global batch's loss terms and gradient norm
    _assert_same_step(r2[1], r1[1])
    with pytest.raises(AssertionError):  # the check tells steps apart
        _assert_same_step(r2[2], r1[1])

    # the two-process run resumed from its step-10 checkpoint in one process: step 11 is the
    # step the two processes took from that state
    shutil.copytree(two, cont)
    for p in RunDir(cont).checkpoint_paths():
        if p.name != "step-00000010":
            shutil.rmtree(p)
    res = _maevae(["train", "--resume", str(cont), "--no-progress"])
    assert "resumed at step 10" in res.stdout
    rc = _train_rows(cont)
    assert all(rc[s] == r2[s] for s in range(1, 11))  # the metrics before the checkpoint kept
    _assert_same_step(rc[11], r2[11])
