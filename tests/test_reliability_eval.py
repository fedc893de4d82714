"""Long evaluations survive interruption: the IS-NLL saves partial results and resumes.

An evaluation is interrupted after a few batches (an exception raised from the patched
``importance_sampled_batch``, as a Ctrl-C or crash would), then run again: it continues from
the saved position — only the remaining batches are computed — and the per-image results
equal those of an uninterrupted evaluation exactly. Partial results that are stale (other
settings) or forged (not safetensors) are ignored, never trusted.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from maevae.cli import main as cli_main
from maevae.evaluate import nll as runner


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("eval") / "run"
    cli_main(["train", "tiny/test", "--out", str(path), "--no-progress", "--set",
              "train.num_threads=1", "--set", "train.max_steps=3"])
    return path


def _evaluate(run, monkeypatch, *, fail_after=None, chunk_images=1):
    """evaluate_run with K=8; returns (per-image results, number of batches computed)."""
    calls, results = {"n": 0}, {}
    real_batch, real_nll = runner.importance_sampled_batch, runner.importance_sampled_test_nll

    def batch(*a, **k):
        if fail_after is not None and calls["n"] >= fail_after:
            raise Interrupted
        calls["n"] += 1
        return real_batch(*a, **k)

    def nll(*a, **k):
        out = real_nll(*a, **k)
        results.update(out)
        return out

    monkeypatch.setattr(runner, "importance_sampled_batch", batch)
    monkeypatch.setattr(runner, "importance_sampled_test_nll", nll)
    monkeypatch.setattr(runner, "PARTIAL_EVERY_S", -1.0)  # save after every batch
    # nll_chunk = K * images per batch
    cfg_set = runner.load_run_config

    def load_cfg(r):
        cfg = cfg_set(r)
        cfg.eval.nll_chunk = 8 * chunk_images
        return cfg

    monkeypatch.setattr(runner, "load_run_config", load_cfg)
    try:
        runner.evaluate_run(run, None, torch.device("cpu"), nll_samples=8, max_images=20,
                            progress=False, log=lambda *a: None)
    finally:
        monkeypatch.undo()
    return results, calls["n"]


@pytest.mark.parametrize("chunk_images", [1, 3])
def test_interrupted_evaluation_resumes_and_matches(trained, tmp_path, monkeypatch, chunk_images):
    ref_dir, run = tmp_path / "ref", tmp_path / "run"
    shutil.copytree(trained, ref_dir)
    shutil.copytree(trained, run)
    ref, n_ref = _evaluate(ref_dir, monkeypatch, chunk_images=chunk_images)
    assert n_ref == -(-20 // chunk_images) and ref["nll"].shape == (20,)

    with pytest.raises(Interrupted):
        _evaluate(run, monkeypatch, fail_after=4, chunk_images=chunk_images)
    meta = json.loads((run / "eval_partial.json").read_text())
    assert meta["done"] == 4 * chunk_images and (run / meta["file"]).exists()
    assert not (run / "eval.json").exists()

    got, n_resumed = _evaluate(run, monkeypatch, chunk_images=chunk_images)
    assert n_resumed == n_ref - 4, "the evaluation started over instead of resuming"
    for name, value in ref.items():
        assert torch.equal(got[name], value), name
    assert json.loads((run / "eval.json").read_text())["nll"] == json.loads(
        (ref_dir / "eval.json").read_text())["nll"]
    assert not list(run.glob("eval_partial*")) and not list(run.glob(".eval_partial*"))


def test_interrupted_twice_still_matches(trained, tmp_path, monkeypatch):
    ref_dir, run = tmp_path / "ref", tmp_path / "run"
    shutil.copytree(trained, ref_dir)
    shutil.copytree(trained, run)
    ref, n_ref = _evaluate(ref_dir, monkeypatch)
    for fail_after in (3, 5):  # 3 batches, then 5 more
        with pytest.raises(Interrupted):
            _evaluate(run, monkeypatch, fail_after=fail_after)
    assert json.loads((run / "eval_partial.json").read_text())["done"] == 8
    got, n = _evaluate(run, monkeypatch)
    assert n == n_ref - 8
    assert all(torch.equal(got[k], ref[k]) for k in ref)


def test_stale_partial_results_are_ignored(trained, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    with pytest.raises(Interrupted):
        _evaluate(run, monkeypatch, fail_after=4)
    # saved under other settings (another K, model or image count): start over, never mix
    meta = json.loads((run / "eval_partial.json").read_text())
    meta["key"] = "0" * 16
    (run / "eval_partial.json").write_text(json.dumps(meta))
    _, n = _evaluate(run, monkeypatch)
    assert n == 20


def test_forged_partial_results_are_refused(trained, tmp_path, monkeypatch):
    """A pickle with a matching checksum in eval_partial.json is not loaded (nor run)."""
    import pickle

    from maevae.runs.files import sha256_bytes

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    ref, _ = _evaluate(run, monkeypatch)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    payload = pickle.dumps({"nll": Evil()})
    with pytest.raises(Interrupted):
        _evaluate(run, monkeypatch, fail_after=2)
    meta = json.loads((run / "eval_partial.json").read_text())
    (run / meta["file"]).write_bytes(payload)
    meta["sha256"] = sha256_bytes(payload)
    (run / "eval_partial.json").write_text(json.dumps(meta))
    got, n = _evaluate(run, monkeypatch)
    assert n == 20 and not marker.exists()
    assert all(torch.equal(got[k], ref[k]) for k in ref)
