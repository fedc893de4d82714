"""A run directory written before the run layer existed still resumes and evaluates.

``tests/fixtures/legacy_run_v1`` was written by maevae at commit fc594bd (see
``legacy_run_v1.md``): tiny/test, interrupted at step 80 of 134, evaluated with K = 4. With
that same code, ``maevae train --resume`` finished at step 134 with a new best model from
epoch 2, and ``maevae eval --nll-samples 4 --max-images 6`` gave NLL 25.6534 nats.
"""

import json
import shutil
from pathlib import Path

import pytest

from maevae.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "legacy_run_v1"


@pytest.fixture
def legacy_run(tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    return run


def test_the_old_evaluation_reads(legacy_run, capsys):
    main(["compare", str(legacy_run)])
    out = capsys.readouterr().out
    assert "26.53" in out  # the NLL in the old eval.json, 26.528 nats


def test_the_old_run_resumes_and_evaluates(legacy_run, capsys):
    main(["train", "--resume", str(legacy_run), "--no-progress"])
    out = capsys.readouterr().out
    assert "resumed at step 80 (epoch 2, batch 13)" in out
    assert "training stopped after 134 steps" in out
    rows = [json.loads(line) for line in (legacy_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "val"] == [67, 134]
    best = json.loads((legacy_run / "best" / "meta.json").read_text())
    assert (best["step"], best["epoch"]) == (134, 1)

    main(["eval", str(legacy_run), "--nll-samples", "4", "--max-images", "6", "--no-progress"])
    ev = json.loads((legacy_run / "eval.json").read_text())
    assert (ev["nll_samples"], ev["nll_images"], ev["best_epoch"]) == (4, 6, 1)
    # the value fc594bd computed from the same checkpoint; a different CPU's kernels may move
    # the 54 resumed steps' rounding, not the NLL by 0.05 nats
    assert ev["nll"] == pytest.approx(25.6534, abs=0.05)
