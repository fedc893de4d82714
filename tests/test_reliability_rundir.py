"""Reliability II (issue #12), classes 3, 6 and 7.

3. MPD / STD of small batches: MPD needs 2 posteriors, STD 3; a batch too small for a
   statistic does not contribute to it, and a statistic no batch qualifies for is None
   (null in metrics.jsonl / eval.json, "n/a" when printed), never 0.
6. Every run-directory file is validated on read: one ``maevae: error:`` line naming the
   file and the field, exit code 2, nothing modified.
7. No command writes over a file a run owns (``runs.outputs.check_output_path``).

The CLI cases run in-process through ``maevae.cli.main`` like tests/test_hostile_inputs.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from maevae.cli import main as cli_main
from maevae.objectives import MIN_MPD_BATCH, MIN_STD_BATCH, batch_mpd_std
from maevae.runs.files import read_signed_json, signed_json
from maevae.runs.results import EvalResults, read_results, write_results

# ------------------------------------------------------------------------------ fixtures
TRAIN = ["--no-progress", "--set", "train.num_threads=1", "--set", "train.max_steps=3"]


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory) -> Path:
    """A tiny trained run with an eval.json."""
    path = tmp_path_factory.mktemp("rundir") / "run"
    cli_main(["train", "tiny/test", "--out", str(path), *TRAIN])
    cli_main(["eval", str(path), "--no-progress"])
    assert (path / "eval.json").exists()
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@dataclass
class Ctx:
    tmp: Path
    run: Path  # a copy of the evaluated run
    other: Path  # a second copy


@dataclass
class Case:
    id: str
    argv: str  # formatted with tmp / run / other, split on whitespace
    expect: str  # must occur in the one error line (formatted like argv)
    setup: Callable[[Ctx], None] | None = None
    warning: str | None = None  # must occur in a warning line before the error


# ------------------------------------------------------------------------------ set-ups
def _json_edit(rel: str, fn):
    def setup(c: Ctx) -> None:
        p = c.run / rel
        p.write_text(json.dumps(fn(json.loads(p.read_text()))))
    return setup


def _bytes(rel: str, fn):
    def setup(c: Ctx) -> None:
        p = c.run / rel
        p.write_bytes(fn(p.read_bytes()))
    return setup


def _resign(rel: str, fn):
    """Edit a signed JSON file (state.json, best/meta.json) and sign it again: valid JSON with
    a matching checksum but fields of the wrong type."""
    def setup(c: Ctx) -> None:
        for p in sorted(c.run.glob(rel)):
            p.write_bytes(signed_json(fn(read_signed_json(p))))
    return setup


def _drop(key):
    return lambda d: {k: v for k, v in d.items() if k != key}


def _set(key, value):
    return lambda d: {**d, key: value}


def _insert_line(no: int, line: bytes):
    def fn(data: bytes) -> bytes:
        lines = data.split(b"\n")
        lines.insert(no - 1, line)
        return b"\n".join(lines)
    return fn


def _symlink(name: str, target: str):
    def setup(c: Ctx) -> None:
        (c.tmp / name).symlink_to(c.run / target)
    return setup


def _hardlink(name: str, target: str):
    def setup(c: Ctx) -> None:
        os.link(c.run / target, c.tmp / name)
    return setup


CASES = [
    # ---- class 6: run.json -----------------------------------------------------------------
    Case("run-json-no-image-shape", "eval {run} --no-progress",
         "run.json in {run}: field image_shape is missing",
         _json_edit("run.json", _drop("image_shape"))),
    Case("run-json-image-shape-str", "sample {run} -n 2 --out {tmp}/s.png",
         "run.json in {run}: field image_shape must be a list of 3 positive integers (got str)",
         _json_edit("run.json", _set("image_shape", "1x8x8"))),
    Case("run-json-image-shape-2d", "train --resume {run} --no-progress",
         "field image_shape must be a list of 3 positive integers (got list)",
         _json_edit("run.json", _set("image_shape", [8, 8]))),
    Case("run-json-image-shape-zero", "eval {run}", "field image_shape must be a list of 3",
         _json_edit("run.json", _set("image_shape", [1, 0, 8]))),
    Case("run-json-list", "eval {run}", "run.json in {run}: must hold a JSON object (got list)",
         _bytes("run.json", lambda b: b"[1, 2]")),
    Case("run-json-not-utf8", "sample {run}", "run.json in {run}: is not UTF-8 text",
         _bytes("run.json", lambda b: b.replace(b"{", b"{\"x\": \"\xff\xfe\",", 1))),
    Case("run-json-notes-type", "eval {run}", "field data_notes must be a list of strings",
         _json_edit("run.json", _set("data_notes", "one note"))),
    # ---- class 6: metrics.jsonl ------------------------------------------------------------
    Case("metrics-list-line", "train --resume {run} --no-progress",
         "metrics.jsonl line 2 in {run}: must be a JSON object (got list)",
         _bytes("metrics.jsonl", _insert_line(2, b"[1, 2, 3]"))),
    Case("metrics-number-line", "train --resume {run} --no-progress",
         "metrics.jsonl line 1 in {run}: must be a JSON object (got int)",
         _bytes("metrics.jsonl", _insert_line(1, b"7"))),
    Case("metrics-not-utf8", "train --resume {run} --no-progress",
         "metrics.jsonl line 2 in {run}: is not UTF-8 text",
         _bytes("metrics.jsonl", _insert_line(2, b'{"kind": "\xff"}'))),
    Case("metrics-garbage-middle", "train --resume {run} --no-progress",
         "metrics.jsonl line 1 in {run}: is not JSON",
         _bytes("metrics.jsonl", _insert_line(1, b'{"kind": "tra'))),
    Case("metrics-no-step", "train --resume {run} --no-progress",
         "metrics.jsonl line 1 in {run}: field step is missing",
         _bytes("metrics.jsonl", _insert_line(1, b'{"kind": "train"}'))),
    Case("metrics-step-str", "train --resume {run} --no-progress",
         "field step must be an integer >= 0 (got str)",
         _bytes("metrics.jsonl", _insert_line(1, b'{"kind": "train", "step": "3"}'))),
    # ---- class 6: eval.json ----------------------------------------------------------------
    Case("eval-json-list", "compare {run} {other}", "does not hold a JSON object (it holds a list",
         _bytes("eval.json", lambda b: b"[1, 2]")),
    Case("eval-json-not-utf8", "compare {run}", "eval.json is not valid JSON",
         _bytes("eval.json", lambda b: b"\xff" + b)),
    Case("eval-json-mpd-str", "compare {run}", "field 'mpd' is \"big\"",
         _json_edit("eval.json", _set("mpd", "big"))),
    # ---- class 6: config.yaml --------------------------------------------------------------
    Case("config-not-utf8", "eval {run}", "config.yaml in {run}: is not UTF-8 text",
         _bytes("config.yaml", lambda b: b"# \xff\xfe\n" + b)),
    Case("config-not-utf8-resume", "train --resume {run}", "config.yaml in {run}: is not UTF-8",
         _bytes("config.yaml", lambda b: b"# \xe9t\xe9\n" + b)),
    Case("config-list", "sample {run}", "config.yaml in {run}: must be a mapping of config "
         "sections (got list)", _bytes("config.yaml", lambda b: b"- 1\n- 2\n")),
    Case("config-empty", "eval {run}", "config.yaml in {run}: must be a mapping of config "
         "sections (got null)", _bytes("config.yaml", lambda b: b"")),
    Case("config-deep", "eval {run}", "nested more than",
         _bytes("config.yaml", lambda b: b"a: " + b"[" * 50_000 + b"]" * 50_000 + b"\n")),
    Case("config-alias", "sample {run}", "anchors",
         _bytes("config.yaml", lambda b: b"x: &a [1]\ny: *a\n" + b)),
    Case("config-huge-copies", "eval {run}", "data.test_copies=1000000000",
         _bytes("config.yaml", lambda b: re.sub(rb"test_copies: \d+", b"test_copies: 1000000000",
                                                b))),
    # ---- class 6: best/meta.json and state.json (re-signed: checksums match) ---------------
    Case("best-meta-sha-int", "eval {run}", "best/meta.json in {run}: field sha256 must be a "
         "string (got int)", _resign("best/meta.json", _set("sha256", 5))),
    Case("best-meta-epoch-str", "sample {run}", "best/meta.json in {run}: field epoch must be "
         "an integer (got str)", _resign("best/meta.json", _set("epoch", "0"))),
    Case("state-counters-list", "train --resume {run}", "state.json in {run}: field counters "
         "must be an object (got list); it is not what this maevae writes",
         _resign("checkpoints/*/state.json", _set("counters", [1, 2]))),
    Case("state-step-str", "train --resume {run}",
         "field step must be an integer >= 0 (got str)",
         _resign("checkpoints/*/state.json", _set("step", "3"))),
    # ---- class 7: outputs over a run's files -----------------------------------------------
    Case("compare-out-eval-json", "compare {run} {other} --out {run}/eval.json",
         "--out {run}/eval.json would write over eval.json of the run {run}"),
    Case("compare-out-other-run", "compare {run} --out {other}/run.json",
         "would write over run.json of the run {other}"),
    Case("compare-out-symlink", "compare {run} {other} --out {tmp}/link.md",
         "would write over eval.json of the run {run}", _symlink("link.md", "eval.json")),
    Case("compare-out-hardlink", "compare {run} --out {tmp}/hard.md",
         "is the same file as eval.json of the run {run}", _hardlink("hard.md", "eval.json")),
    Case("compare-out-checkpoint", "compare {run} --out {run}/checkpoints/table.md",
         "would write over checkpoints/table.md of the run"),
    Case("compare-out-metrics-dotdot", "compare {run} --out {run}/best/../metrics.jsonl",
         "would write over metrics.jsonl of the run"),
    Case("compare-out-folder", "compare {run} --out {tmp}", "--out {tmp} is a folder"),
    Case("compare-out-run-dir", "compare {run} --out {run}", "is a folder"),
    Case("compare-out-report", "compare {run} --out {run}/report.md",
         "would write over report.md of the run"),
    Case("sample-out-figure", "sample {run} -n 2 --out {run}/tsne.png",
         "would write over tsne.png of the run"),
    Case("sample-out-best", "sample {run} -n 2 --out {run}/best/model.png",
         "would write over best/model.png"),
    Case("reconstruct-out-samples", "reconstruct {run} -n 2 --out {run}/samples.png",
         "would write over samples.png of the run"),
    Case("sample-out-symlink-config", "sample {run} -n 2 --out {tmp}/c.png",
         "would write over config.yaml of the run", _symlink("c.png", "config.yaml")),
    Case("train-out-in-checkpoints", "train tiny/test --out {run}/checkpoints/new --no-progress",
         "would write over checkpoints/new of the run {run}"),
    Case("run-out-in-best", "run --out {run}/best/main", "would write over best/main"),
]


def test_table_is_large_enough():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


def _run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        cli_main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_run_file_problem_gives_one_line_error(case: Case, tmp_path, evaluated_run, capsys):
    ctx = Ctx(tmp=tmp_path, run=tmp_path / "run", other=tmp_path / "other")
    shutil.copytree(evaluated_run, ctx.run)
    shutil.copytree(evaluated_run, ctx.other)
    if case.setup:
        case.setup(ctx)
    before = {"run": _snapshot(ctx.run), "other": _snapshot(ctx.other)}
    fmt = {"tmp": ctx.tmp, "run": ctx.run, "other": ctx.other}
    code, out, err = _run_cli(case.argv.format(**fmt).split(), capsys)
    assert code == 2, (out, err)
    warnings = [ln for ln in err.strip().splitlines() if ln.startswith("maevae: warning: ")]
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("maevae: warning: ")]
    assert len(lines) == 1, f"expected one error line on stderr, got:\n{err}"
    assert lines[0].startswith("maevae: error: "), lines[0]
    assert case.expect.format(**fmt) in lines[0], lines[0]
    if case.warning:
        assert any(case.warning in w for w in warnings), err
    assert "Traceback" not in out + err
    print(f"[{case.id}] {lines[0]}")
    assert _snapshot(ctx.run) == before["run"], "the run directory was modified"
    assert _snapshot(ctx.other) == before["other"], "the other run directory was modified"


# ------------------------------------------------------------------ class 6: positive cases
def test_torn_last_metrics_line_is_dropped_on_resume(tmp_path, evaluated_run, capsys):
    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run)
    p = run / "metrics.jsonl"
    good = p.read_bytes()
    p.write_bytes(good + b'{"kind": "train", "step": 4, "lo')  # a crash mid-write
    code, out, err = _run_cli(["train", "--resume", str(run), "--no-progress"], capsys)
    assert code == 0, err
    assert "already finished" in out
    assert p.read_bytes() == good  # the torn row is gone, every complete row kept


def test_torn_last_line_with_bad_bytes_is_dropped_but_a_complete_one_is_not(tmp_path):
    from maevae.errors import CheckpointError
    from maevae.runs.directory import RunDir

    run = RunDir(tmp_path)
    (tmp_path / "metrics.jsonl").write_bytes(b'{"kind": "train", "step": 1}\n{"kind": "\xff')
    assert run.read_metrics() == [{"kind": "train", "step": 1}]
    (tmp_path / "metrics.jsonl").write_bytes(b'{"kind": "train", "step": 1}\n{"kind": "\xff\n')
    with pytest.raises(CheckpointError, match="metrics.jsonl line 2 .*not UTF-8"):
        run.read_metrics()


def test_require_names_file_run_and_field():
    from maevae.errors import CheckpointError
    from maevae.runs.validate import require

    assert require({"a": [1, 2, 3]}, "a", "image_shape", "run.json", "R") == [1, 2, 3]
    assert require({}, "a", "int", "f", default=None) is None
    with pytest.raises(CheckpointError) as e:
        require({"image_shape": "1x8x8"}, "image_shape", "image_shape", "run.json", "RUN")
    assert str(e.value) == ("run.json in RUN: field image_shape must be a list of 3 positive "
                            "integers (got str)")
    with pytest.raises(CheckpointError, match="field n must be an integer .got bool"):
        require({"n": True}, "n", "int", "x.json")


# ------------------------------------------------------------ class 7: allowed outputs
def test_compare_over_an_unrelated_file_and_sample_default_are_allowed(tmp_path, evaluated_run,
                                                                       capsys):
    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run)
    before = (run / "eval.json").read_bytes()
    target = tmp_path / "table.md"
    target.write_text("old")
    code, out, err = _run_cli(["compare", str(run), "--out", str(target)], capsys)
    assert code == 0, err
    assert target.read_text().startswith("#") or "|" in target.read_text()
    assert (run / "eval.json").read_bytes() == before
    code, out, err = _run_cli(["sample", str(run), "-n", "2"], capsys)  # RUN/samples.png
    assert code == 0, err
    assert (run / "samples.png").exists()


def test_check_output_path_unit(tmp_path):
    from maevae.errors import CheckpointError
    from maevae.runs.outputs import check_output_path

    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    check_output_path(tmp_path / "x.md", [run])
    check_output_path(run / "notes.md", [run])  # not a file of the run
    check_output_path(run / "samples.png", [run], allow=["samples.png"])
    with pytest.raises(CheckpointError, match="would write over run.json of the run"):
        check_output_path(run / "run.json", [])  # found by walking up: run/ holds run.json
    with pytest.raises(CheckpointError, match="is a folder"):
        check_output_path(run / "checkpoints", [run])
    check_output_path(tmp_path / "newrun", folder=True)


# -------------------------------------------------------------------------- class 3
def _brute(mu: torch.Tensor, logvar: torch.Tensor) -> tuple[float, float | None]:
    """MPD and STD by a double loop over ordered pairs with torch.distributions."""
    b = mu.shape[0]
    sd = (0.5 * logvar).exp()
    totals = [float(kl_divergence(Normal(mu[i], sd[i]), Normal(mu[j], sd[j])).sum())
              for i in range(b) for j in range(b) if i != j]
    return sum(totals) / len(totals), (statistics.stdev(totals) if b >= 3 else None)


def test_two_posteriors_mpd_closed_form_and_std_na():
    g = torch.Generator().manual_seed(11)
    mu = torch.randn(2, 5, generator=g, dtype=torch.float64)
    logvar = 0.5 * torch.randn(2, 5, generator=g, dtype=torch.float64)
    assert (MIN_MPD_BATCH, MIN_STD_BATCH) == (2, 3)
    sd = (0.5 * logvar).exp()
    p, q = Normal(mu[0], sd[0]), Normal(mu[1], sd[1])
    closed = 0.5 * float(kl_divergence(p, q).sum() + kl_divergence(q, p).sum())
    mpd, std = batch_mpd_std(mu, logvar)
    assert mpd == pytest.approx(closed, rel=1e-9)
    assert std is None
    assert batch_mpd_std(mu[:1], logvar[:1]) is None


@pytest.mark.parametrize("b", [3, 4, 7])
def test_three_or_more_posteriors_match_brute_force(b):
    g = torch.Generator().manual_seed(b)
    mu = torch.randn(b, 4, generator=g, dtype=torch.float64)
    logvar = 0.4 * torch.randn(b, 4, generator=g, dtype=torch.float64)
    mpd, std = batch_mpd_std(mu, logvar)
    ref_mpd, ref_std = _brute(mu, logvar)
    assert mpd == pytest.approx(ref_mpd, rel=1e-9)
    assert std == pytest.approx(ref_std, rel=1e-9)


def test_batch_statistics_leave_small_batches_out():
    from maevae.config import load_config
    from maevae.models.build import build_model
    from maevae.statistics import batch_statistics

    cfg = load_config("tiny/test", [])
    torch.manual_seed(0)
    model = build_model(cfg.model, (1, 8, 8))
    x = (torch.rand(7, 1, 8, 8) > 0.5).float()
    two = batch_statistics(model, x, batch=2, n_samples=1, generator=torch.Generator())
    assert two["mpd"] is not None and two["mpd"] > 0 and two["std"] is None
    three = batch_statistics(model, x, batch=3, n_samples=1, generator=torch.Generator())
    assert three["mpd"] is not None and three["std"] is not None  # last batch of 1: left out
    one = batch_statistics(model, x[:1], batch=3, n_samples=1, generator=torch.Generator())
    assert one["mpd"] is None and one["std"] is None


def test_eval_batch_2_reports_na_never_zero(tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = _run_cli(["train", "tiny/test", "--out", str(run), *TRAIN,
                               "--set", "train.eval_batch=2"], capsys)
    assert code == 0, err
    assert "STD needs" in err and "n/a" in err  # warned once at the start
    assert "STD n/a" in out
    val = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()
           if json.loads(ln)["kind"] == "val"]
    assert val and all(r["std"] is None and r["mpd"] > 0 for r in val)
    code, out, err = _run_cli(["eval", str(run), "--no-progress"], capsys)
    assert code == 0, err
    assert "STD n/a" in out
    raw = json.loads((run / "eval.json").read_text())
    assert raw["std"] is None and raw["mpd"] > 0
    assert read_results(run / "eval.json").statistics.std is None
    code, out, err = _run_cli(["compare", str(run)], capsys)
    assert code == 0, err
    assert "n/a" in out
    assert " 0.00 " not in out.split("\n| ")[0]  # the STD cell is not rendered as 0


def test_eval_results_round_trip_null_mpd_std(tmp_path):
    ev = EvalResults()
    ev.likelihood.nll = 1.0
    ev.statistics.elbo, ev.statistics.mpd = 2.0, 3.0
    p = tmp_path / "eval.json"
    write_results(p, ev)
    raw = json.loads(p.read_text())
    assert raw["std"] is None and raw["mpd"] == 3.0
    back = read_results(p)
    assert back.statistics.std is None and back.statistics.mpd == 3.0
