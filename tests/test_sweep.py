"""``maevae sweep``: the sweep file's validation, run ids, the table's mean ± std, and a
sweep killed with SIGTERM part-way and run again to completion."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maevae.cli import main
from maevae.errors import ConfigError
from maevae.runs.results import EvalResults, read_results, write_results
from maevae.sweep.jobarray import job_array_script
from maevae.sweep.spec import load_sweep
from maevae.sweep.table import mean_std, write_tables

GOOD = """\
name: t
seeds: [1, 2]
variants:
  A: {preset: tiny/test}
  B: {preset: tiny/test, set: {objective.eta: 0.5}}
grid:
  objective.gamma: [0.1, 0.5]
eval: {nll_samples: 4}
"""


def _write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(("text", "needle"), [
    (GOOD + "colour: red\n", "unknown key 'colour'; allowed: name, seeds"),
    (GOOD.replace("[0.1, 0.5]", "[]"), "grid.objective.gamma: []: give a non-empty list"),
    (GOOD.replace("{preset: tiny/test}", "{preset: tiny/nope}"), "unknown preset 'tiny/nope'"),
    (GOOD.replace("objective.eta: 0.5", "objective.eta: abc"), "objective.eta"),
    (GOOD.replace("objective.eta: 0.5", "objective.etaa: 1"), "objective.etaa"),
    (GOOD.replace("{nll_samples: 4}", "{nll_samples: 0}"), "eval.nll_samples: 0: use an integer"),
    (GOOD.replace("{nll_samples: 4}", "{speed: 4}"), "eval: unknown key 'speed'"),
    (GOOD.replace("[1, 2]", "[1, 1]"), "repeats a seed"),
    (GOOD.replace("  A:", "  A__x:"), "label \"A__x\""),
])
def test_bad_sweep_files_give_one_line_naming_the_file(tmp_path, text, needle, capsys):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_sweep(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and needle in msg, msg
    with pytest.raises(SystemExit) as ex:  # the command line: one line, exit code 2
        main(["sweep", str(path), "--out", str(tmp_path / "out"), "--table-only"])
    err = capsys.readouterr().err
    assert ex.value.code == 2 and err.count("\n") == 1 and needle in err
    assert not (tmp_path / "out").exists()


def test_bad_command_line_set_names_the_run(tmp_path):
    with pytest.raises(ConfigError, match=r"run A__gamma0\.1__seed1 .*train\.max_steps"):
        load_sweep(_write(tmp_path, GOOD), sets=["train.max_steps=-3"])


def test_run_ids_are_deterministic_and_configs_follow_the_layers(tmp_path):
    path = _write(tmp_path, GOOD)
    a, b = load_sweep(path), load_sweep(path, sets=["train.max_steps=7"])
    ids = [r.run_id for r in a.runs]
    assert ids == [r.run_id for r in b.runs] == [
        "A__gamma0.1__seed1", "A__gamma0.1__seed2", "A__gamma0.5__seed1",
        "A__gamma0.5__seed2", "B__gamma0.1__seed1", "B__gamma0.1__seed2",
        "B__gamma0.5__seed1", "B__gamma0.5__seed2"]
    r = b.runs[5]  # B, gamma 0.1, seed 2
    assert (r.config.objective.eta, r.config.objective.gamma, r.config.seed,
            r.config.train.max_steps) == (0.5, 0.1, 2, 7)
    assert a.runs[0].config.objective.eta == 1.0  # the preset's own value
    assert [r.run_id for r in load_sweep(path, seeds=[3]).runs][:1] == ["A__gamma0.1__seed3"]
    script = job_array_script(path, tmp_path / "o", len(ids), "t", ["--set", "a=1"])
    assert "#SBATCH --array=0-7" in script
    assert '--only-index "$SLURM_ARRAY_TASK_ID"' in script and "--table-only" in script


def test_mean_std_is_the_sample_std():
    mean, std, n = mean_std([1.0, 2.0, 4.0])
    assert n == 3 and mean == pytest.approx(7 / 3)
    assert std == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2
                                           + (4 - 7 / 3) ** 2) / 2))
    assert mean_std([5.0]) == (5.0, None, 1) and mean_std([]) == (None, None, 0)


def test_the_table_from_eval_files_by_hand(tmp_path):
    spec = load_sweep(_write(tmp_path, GOOD))
    out = tmp_path / "out"
    nlls = {"A__gamma0.1__seed1": 10.0, "A__gamma0.1__seed2": 13.0, "B__gamma0.1__seed1": 7.0}
    for rid, nll in nlls.items():
        res = EvalResults()
        res.likelihood.nll, res.statistics.kl = nll, nll / 10
        if rid.startswith("A"):
            res.representation.clustering = {"kmeans": {"10": {"acc_test": {"mean": nll / 100}}}}
        (out / rid).mkdir(parents=True)
        write_results(out / rid / "eval.json", res)
    write_tables(out, spec.name, spec.runs, list(spec.grid))
    rows = {(r["variant"], r["objective.gamma"]): r
            for r in csv.DictReader((out / "results.csv").open())}
    a = rows[("A", "0.1")]
    assert a["n"] == "2" and float(a["nll_mean"]) == 11.5
    assert float(a["nll_std"]) == pytest.approx(math.sqrt(4.5))
    assert float(a["kmeans10_mean"]) == pytest.approx(0.115)
    b = rows[("B", "0.1")]
    assert b["n"] == "1" and b["nll_mean"] == "7.0" and b["nll_std"] == ""
    assert b["kmeans10_mean"] == "" and b["mi_mean"] == ""  # missing, never 0
    assert rows[("A", "0.5")]["n"] == "0" and rows[("A", "0.5")]["nll_mean"] == ""
    md = (out / "results.md").read_text()
    assert "| A | 0.1 | 2/2 | 11.50 ± 2.12 | n/a | 1.15 ± 0.21 |" in md
    assert "| B | 0.1 | 1/2 | 7.00 ± n/a | n/a | 0.70 ± n/a | n/a | n/a |" in md


# ------------------------------------------------------------------ kill and resume
KILL = """\
name: kill
seeds: [1, 2]
variants:
  V: {preset: tiny/test, set: {objective.eta: 0.0, objective.gamma: 0.0}}
  M: {preset: tiny/test}
grid:
  model.encoder.latent_dim: [2, 3]
eval: {nll_samples: 4, probes: true, probe_runs: 1, labels: "100,all"}
"""
_STEPS = 40


def _sweep(path: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "maevae", "sweep", str(path), "--out", str(out), "--jobs",
            "2", "--threads", "1", "--set", f"train.max_steps={_STEPS}", "--no-progress",
            *extra]


def _training_now(out: Path) -> bool:
    """Some run is part-way through training (train rows in metrics.jsonl, not finished)."""
    for d in out.glob("*__seed*"):
        m = d / "metrics.jsonl"
        if m.exists() and not (d / "eval.json").exists():
            steps = [json.loads(x)["step"] for x in m.read_text().splitlines()
                     if x.strip() and '"kind": "train"' in x]
            if steps and 0 < max(steps) <= _STEPS // 2:
                return True
    return False


def test_a_killed_sweep_resumes_and_runs_every_run_once(tmp_path):
    path = _write(tmp_path, KILL)
    out = tmp_path / "out"
    t0 = time.time()
    proc = subprocess.Popen(_sweep(path, out), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    while proc.poll() is None and not (any(out.glob("*/eval.json")) and _training_now(out)):
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep finished before it could be killed"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "run the same `maevae sweep` command again" in err.strip().splitlines()[-1]
    created = {d.name: json.loads((d / "run.json").read_text())["created"]
               for d in out.glob("*__seed*") if (d / "run.json").exists()}
    # stopped part-way through training: the newest checkpoint's step, saved on SIGTERM
    interrupted = {d.name: max(int(c.name.removeprefix("step-"))
                               for c in (d / "checkpoints").glob("step-*"))
                   for d in out.glob("*__seed*") if (d / "run.json").exists()
                   and "training stopped" not in (out / "logs" / f"{d.name}.log").read_text()
                   and any((d / "checkpoints").glob("step-*"))}
    interrupted = {k: v for k, v in interrupted.items() if v > 0}
    assert interrupted, "no run was stopped part-way through training"

    again = subprocess.run(_sweep(path, out), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    spec = load_sweep(path, sets=[f"train.max_steps={_STEPS}"])
    assert len(spec.runs) == 8
    for run in spec.runs:
        d = out / run.run_id
        log = (out / "logs" / f"{run.run_id}.log").read_text()
        fresh = len(re.findall(r"^== maevae sweep: train \d", log, re.M))
        if run.run_id in created:  # made before the kill: never made again
            assert fresh == 1, run.run_id
            assert json.loads((d / "run.json").read_text())["created"] == created[run.run_id]
        else:  # killed (if at all) while starting, before its run directory existed
            assert fresh in (1, 2), run.run_id
        steps = [json.loads(x)["step"] for x in (d / "metrics.jsonl").read_text().splitlines()
                 if '"kind": "train"' in x]
        assert steps == sorted(set(steps)) and steps[-1] == _STEPS, run.run_id
        res = read_results(d / "eval.json")
        assert res.likelihood.nll_samples == 4 and res.representation.probe_timings
    for rid, step in interrupted.items():  # resumed from that checkpoint, not restarted
        log = (out / "logs" / f"{rid}.log").read_text()
        assert "== maevae sweep: train --resume" in log
        assert re.findall(r"resumed at step (\d+)", log) == [str(step)], rid

    # the table holds each row's mean / sample std over its runs' own eval.json
    rows = {(r["variant"], r["model.encoder.latent_dim"]): r
            for r in csv.DictReader((out / "results.csv").open())}
    assert len(rows) == 4
    for (variant, dim), row in rows.items():
        evs = [read_results(out / r.run_id / "eval.json") for r in spec.runs
               if r.variant == variant and str(dict(r.point)["model.encoder.latent_dim"]) == dim]
        for key, get in (("nll", lambda e: e.likelihood.nll), ("kl", lambda e: e.statistics.kl),
                         ("mi", lambda e: e.representation.diagnostics["mutual_information"]),
                         ("kmeans10", lambda e: e.representation.clustering["kmeans"]["10"]
                          ["acc_test"]["mean"]),
                         ("knn@100", lambda e: e.representation.probes["results"]["knn"]
                          ["100"]["acc_test"]["mean"])):
            vals = [get(e) for e in evs]
            mean = sum(vals) / 2
            std = math.sqrt(sum((v - mean) ** 2 for v in vals))  # ddof = 1 with n = 2
            assert row["n"] == "2" and float(row[f"{key}_mean"]) == pytest.approx(mean)
            assert float(row[f"{key}_std"]) == pytest.approx(std)
    assert (out / "kl_vs_nll.png").stat().st_size > 1000
    assert (out / "kmeans_vs_nll.png").stat().st_size > 1000

    # a third run does nothing; --table-only gives the same table
    table = (out / "results.csv").read_text()
    third = subprocess.run(_sweep(path, out, "--table-only"), capture_output=True, text=True)
    assert third.returncode == 0 and (out / "results.csv").read_text() == table
    print(f"kill test: {time.time() - t0:.0f} s")


def test_a_failed_run_is_reported_the_others_finish_and_a_rerun_retries_it(tmp_path):
    path = _write(tmp_path, "seeds: [1, 2]\nvariants: {A: tiny/test}\neval: {nll_samples: 2}\n")
    out = tmp_path / "out"
    bad = out / "A__seed1"
    bad.mkdir(parents=True)
    (bad / "run.json").write_text("not json")  # a broken run: `train --resume` refuses it
    cmd = [sys.executable, "-m", "maevae", "sweep", str(path), "--out", str(out),
           "--set", "train.max_steps=3", "--threads", "1", "--no-progress"]
    first = subprocess.run(cmd, capture_output=True, text=True)
    assert first.returncode == 1, first.stderr
    last = first.stderr.strip().splitlines()[-1]
    assert last.startswith("maevae: error: 1 of 2 run(s) failed: A__seed1: train --resume "
                           "exited with code 2: maevae: error:") and "run.json" in last
    assert str(out / "logs" / "A__seed1.log") in last and "run the same command" in last
    assert read_results(out / "A__seed2" / "eval.json").likelihood.nll_samples == 2
    row = next(csv.DictReader((out / "results.csv").open()))
    assert row["n"] == "1" and row["nll_std"] == ""
    (bad / "run.json").unlink()  # the cause fixed: the rerun trains it, skips the other
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "1 of 2 run(s) already done" in again.stdout
    assert (out / "logs" / "A__seed2.log").read_text().count("== maevae sweep: eval") == 1
    assert next(csv.DictReader((out / "results.csv").open()))["n"] == "2"


def test_job_array_and_only_index_options(tmp_path, capsys):
    path = _write(tmp_path, GOOD)
    script = tmp_path / "array.sbatch"
    main(["sweep", str(path), "--out", str(tmp_path / "o"), "--emit-job-array", str(script),
          "--set", "train.max_steps=2", "--threads", "1"])
    text = script.read_text()
    assert "#SBATCH --array=0-7" in text and "--set train.max_steps=2 --threads 1" in text
    assert os.access(script, os.X_OK) and not any((tmp_path / "o").glob("*__seed*"))
    with pytest.raises(SystemExit) as e:
        main(["sweep", str(path), "--out", str(tmp_path / "o"), "--only-index", "8"])
    assert e.value.code == 2 and "runs 0..7" in capsys.readouterr().err


def test_children_get_their_threads_and_gpu(tmp_path, capsys):
    from maevae.sweep.execute import _child_env

    env = _child_env(3, "1")
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "3"
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in _child_env(None, None) or os.environ.get(
        "CUDA_VISIBLE_DEVICES") is not None
    path = _write(tmp_path, GOOD)
    for argv, needle in ((["--devices", "0,1", "--jobs", "3"], "drop --jobs"),
                         (["--devices", "a"], "give GPU numbers"),
                         (["--seeds", "1,x"], "--seeds '1,x'"),
                         (["--jobs", "0"], "--jobs 0"),
                         (["--table-only"], "does not exist")):
        with pytest.raises(SystemExit) as e:
            main(["sweep", str(path), "--out", str(tmp_path / "none"), *argv])
        err = capsys.readouterr().err
        assert e.value.code == 2 and needle in err and err.count("\n") == 1, err


def test_the_example_sweep_file_loads():
    spec = load_sweep(Path(__file__).resolve().parents[1] / "sweeps" / "example_tiny.yaml")
    assert len(spec.runs) == len({r.run_id for r in spec.runs}) == 8
    assert spec.runs[0].run_id == "VLAE__latentdim2__seed1" and spec.eval.probes


@pytest.mark.parametrize("name", ["digits_remedies", "mnist_remedies"])
def test_the_remedies_sweeps_load_with_one_run_per_variant_and_seed(name):
    # every preset they name exists and validates (load_sweep resolves each run's config)
    spec = load_sweep(Path(__file__).resolve().parents[1] / "sweeps" / f"{name}.yaml")
    variants = ["VLAE", "MAE", "beta-0.5", "KL-linear", "KL-cyclical", "free-bits-dim",
                "BN-VAE", "aggressive", "InfoVAE-MMD"]
    assert [r.run_id for r in spec.runs] == [f"{v}__seed{s}" for v in variants
                                             for s in (1, 2, 3)]
