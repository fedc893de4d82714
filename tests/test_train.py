"""Trainer: exact resume, skipped non-finite steps, schedule, EMA."""

import json

import pytest
import torch

from maevae.config import load_config
from maevae.data import load_dataset
from maevae.errors import MaevaeError
from maevae.runs.directory import RunDir
from maevae.train.ema import EMA
from maevae.train.schedule import Schedule
from maevae.train.trainer import Trainer, TrainingStopped


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _trainer(tmp_path, name, digits, sets=()):
    cfg = load_config("tiny/test", ["train.max_epochs=2", "train.checkpoint_every=10", *sets])
    run = RunDir(tmp_path / name)
    run.create("", {"image_shape": list(digits.image_shape)})
    return Trainer(cfg, digits, run, torch.device("cpu"), progress=False, log=lambda *a: None)


def _state(tr):
    return {**{f"m.{k}": v for k, v in tr.model.state_dict().items()},
            **{f"e.{k}": v for k, v in tr.ema.shadow.state_dict().items()}}


def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, digits):
    ref = _trainer(tmp_path, "ref", digits)
    ref.initialize()
    ref.fit()
    a = _trainer(tmp_path, "a", digits)
    a.initialize()
    a.save_checkpoint()
    a.fit(stop_at_step=37)  # mid-epoch 1 (67 steps per epoch), as if interrupted
    assert a.counters.step == 37 and a.counters.batch == 37
    b = Trainer(a.cfg, digits, a.run, torch.device("cpu"), progress=False, log=lambda *x: None)
    assert b.resume() and b.counters.step == 37
    b.fit()
    assert b.counters.step == ref.counters.step == 134
    sa, sr = _state(b), _state(ref)
    assert sa.keys() == sr.keys()
    for k in sr:
        assert torch.equal(sa[k], sr[k]), k
    best_a, _ = b.run.load_best()
    best_r, _ = ref.run.load_best()
    assert all(torch.equal(best_a[k], best_r[k]) for k in best_r)
    va = [r for r in b.run.read_metrics() if r["kind"] == "val"]
    vr = [r for r in ref.run.read_metrics() if r["kind"] == "val"]
    assert [r["elbo"] for r in va] == [r["elbo"] for r in vr]


def test_trainer_uses_fused_adam_and_compiles_only_long_runs(tmp_path, digits, monkeypatch):
    from maevae import device as prec

    monkeypatch.setattr(prec, "compile_unavailable", lambda device: None)
    short = _trainer(tmp_path, "short", digits)  # 2 epochs of 1340 // 20 = 67 steps
    assert short.planned_steps() == 134
    short.initialize()
    assert short.opt.defaults["fused"] is True
    assert short.model.decoder.core._compiled_call_impl is None  # auto: too short to pay back
    long = _trainer(tmp_path, "long", digits, ["train.max_epochs=100"])
    assert long.planned_steps() == 6700
    old = torch._dynamo.config.suppress_errors
    try:  # auto, 6700 >= 5000 planned steps: compiled (lazily, at the first step)
        long.initialize()
    finally:
        torch._dynamo.config.suppress_errors = old
    assert long.model.decoder.core._compiled_call_impl is not None
    capped = _trainer(tmp_path, "capped", digits, ["train.max_epochs=100", "train.max_steps=10"])
    assert capped.planned_steps() == 10


def test_non_finite_steps_are_skipped_counted_and_stop_training(tmp_path, digits, monkeypatch):
    tr = _trainer(tmp_path, "nan", digits, ["train.max_nonfinite=3"])
    tr.initialize()
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    real = tr.model.terms
    calls = {"n": 0}

    def poisoned(*args, **kw):
        t = real(*args, **kw)
        calls["n"] += 1
        if calls["n"] in (2, 3):
            t.recon = t.recon * float("nan")
        return t

    monkeypatch.setattr(tr.model, "terms", poisoned)
    perm = tr._batch_indices(0)
    assert tr.train_step(perm[:20]) is not None
    assert tr.train_step(perm[20:40]) is None and tr.train_step(perm[40:60]) is None
    assert tr.counters.skipped == 2 and tr.counters.consecutive_skipped == 2
    assert tr.train_step(perm[60:80]) is not None and tr.counters.consecutive_skipped == 0
    assert any(not torch.equal(before[k], v) for k, v in tr.model.state_dict().items())

    calls["n"] = 1  # from now on every step is poisoned
    monkeypatch.setattr(tr.model, "terms", lambda *a, **k: _nan(real(*a, **k)))
    with pytest.raises(TrainingStopped, match="non-finite"):
        for i in range(10):
            tr.train_step(perm[i * 20:(i + 1) * 20])
    assert tr.counters.skipped == 2 + 4


def _nan(t):
    t.kl = t.kl * float("inf")
    return t


def test_skipped_steps_are_in_the_metrics(tmp_path, digits, monkeypatch):
    tr = _trainer(tmp_path, "m", digits, ["train.max_epochs=1", "train.log_every=1"])
    tr.initialize()
    real = tr.model.terms
    n = {"i": 0}

    def sometimes_nan(*a, **k):
        n["i"] += 1
        t = real(*a, **k)
        if n["i"] % 10 == 5:
            t.recon = t.recon * float("nan")
        return t

    monkeypatch.setattr(tr.model, "terms", sometimes_nan)
    tr.fit()
    rows = tr.run.read_metrics()
    assert rows[-1]["kind"] == "val" and rows[-1]["skipped"] == 7


def test_schedule_halves_after_patience_and_stops():
    s = Schedule(lr0=1e-3, decay=0.5, patience_limit=1, max_decays=2, min_lr_ratio=0.0,
                 base=1e-3)
    s.step()
    s.step()
    assert s.lr() == pytest.approx(2.5e-4)
    assert s.end_epoch(10.0) == (True, False)
    assert s.end_epoch(11.0) == (False, False)  # patience 0 -> 1
    assert s.end_epoch(11.0) == (False, True)  # halve the current lr, reset
    assert s.lr() == pytest.approx(1.25e-4) and s.iters == 0 and s.decays == 1
    assert s.should_stop() is None
    s.end_epoch(12.0)
    s.end_epoch(12.0)
    assert s.decays == 2 and "halved 2 times" in s.should_stop()


def test_ema_warmup_rate_and_update():
    m = torch.nn.Linear(2, 1)
    ema = EMA(m, 0.999, warmup=True)
    assert ema.rate() == pytest.approx(1 / 10)
    with torch.no_grad():
        m.weight.add_(1.0)
    old = ema.shadow.weight.clone()
    ema.update(m)
    torch.testing.assert_close(ema.shadow.weight, old + 0.9 * (m.weight - old))
    ema.updates = 10_000
    assert ema.rate() == 0.999


def test_trainer_rejects_bad_sizes(tmp_path, digits):
    with pytest.raises(MaevaeError, match="batch_size"):
        _trainer(tmp_path, "big", digits, ["train.batch_size=5000"])


def test_metrics_and_best_written(tmp_path, digits):
    tr = _trainer(tmp_path, "w", digits, ["train.max_epochs=1"])
    tr.initialize()
    tr.fit()
    rows = [json.loads(line) for line in (tr.run.path / "metrics.jsonl").read_text().splitlines()]
    assert {"train", "val"} <= {r["kind"] for r in rows}
    _, meta = tr.run.load_best()
    assert meta["epoch"] == 0


def test_compiled_run_resumes_bit_identically(tmp_path, digits):
    """train.compile=always (torch.compile of the PixelCNN core): a run interrupted at step 13
    and resumed (compiling again) ends with exactly the weights of an uninterrupted one."""
    from maevae.device import compile_unavailable

    if compile_unavailable("cpu"):
        pytest.skip(compile_unavailable("cpu"))
    old = torch._dynamo.config.suppress_errors
    sets = ["train.max_steps=30", "train.compile=always"]
    try:
        ref = _trainer(tmp_path, "cref", digits, sets)
        ref.initialize()
        ref.fit()
        a = _trainer(tmp_path, "ca", digits, sets)
        a.initialize()
        a.save_checkpoint()
        a.fit(stop_at_step=13)
        b = Trainer(a.cfg, digits, a.run, torch.device("cpu"), progress=False,
                    log=lambda *x: None)
        assert b.resume()
        b.fit()
    finally:
        torch._dynamo.config.suppress_errors = old
    assert b.model.decoder.core._compiled_call_impl is not None
    assert b.counters.step == ref.counters.step == 30
    sb, sr = _state(b), _state(ref)
    for k in sr:
        assert torch.equal(sb[k], sr[k]), k
