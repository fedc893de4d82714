"""Aggressive inference-network training (He et al., 2019): the inner loop's stopping rule,
the phase controller, the I_q estimator, the trainer's hooks and exact resume."""

import math

import pytest
import torch
from torch.distributions import Normal

from maevae.config import ConfigError, RunConfig, load_config
from maevae.data import load_dataset
from maevae.errors import MaevaeError
from maevae.runs.directory import RunDir
from maevae.statistics import approximate_mutual_information
from maevae.train.aggressive import AggressivePhase, InnerStop, run_inner_loop
from maevae.train.distributed import DistInfo
from maevae.train.trainer import Trainer


def _stops_after(losses, max_inner, check_every):
    rule = InnerStop(max_inner, check_every)
    for i, loss in enumerate(losses, 1):
        if rule.update(loss):
            return i
    return None


# ------------------------------------------------------------------ the stopping rule
def test_inner_loop_stops_after_the_first_window_whose_sum_rose():
    # windows of 3: sums 9, 6, 6 (equal: not a rise, go on), 7 (rose: stop after step 12)
    losses = [3, 3, 3, 2, 2, 2, 1, 2, 3, 2, 2, 3, 0, 0, 0]
    assert _stops_after(losses, 100, 3) == 12


def test_inner_loop_never_stops_mid_window_and_runs_to_max_inner_while_improving():
    losses = [10.0 - 0.1 * i for i in range(50)]  # always decreasing
    assert _stops_after(losses, 20, 5) == 20
    assert _stops_after([1.0, 100.0, 100.0, 100.0], 100, 4) is None  # first window: vs +inf
    # a max_inner that is not a multiple of the window still stops there
    assert _stops_after(losses, 7, 5) == 7


def test_inner_stop_rejects_a_window_longer_than_the_loop():
    with pytest.raises(ValueError):
        InnerStop(5, 10)


def test_toy_quadratic_runs_the_expected_number_of_inner_steps():
    # loss_k = (w - 3)^2 + noise_k with SGD(lr=0.25): w_k -> 3 geometrically, so the window
    # sums fall until the added loss offsets dominate; the brute-force replay of the same
    # rule on the recorded losses says where it must stop
    w = torch.zeros((), requires_grad=True)
    other = torch.ones((), requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.25)
    bumps = [0.0] * 12 + [5.0] * 100  # from step 13 on, every loss is 5 larger
    seen = []

    def loss_at(k):
        loss = (w - 3) ** 2 + bumps[k] + 0 * other
        seen.append(float(loss.detach()))
        return loss

    made = run_inner_loop(loss_at, [w], opt, max_inner=100, check_every=4)
    # windows of 4: steps 1-4, 5-8, 9-12 fall; 13-16 has +5 each -> stop after 16 steps
    assert made == 16 == len(seen)
    assert other.grad is None  # only the given parameters get gradients
    # each step halves the distance to 3: w_16 = 3 (1 - 0.5^16)
    assert float(w.detach()) == pytest.approx(3 * (1 - 0.5 ** 16), rel=1e-6)


def test_non_finite_inner_loss_ends_the_loop_without_a_step():
    w = torch.zeros((), requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.25)
    made = run_inner_loop(lambda k: (w - 1) ** 2 * (math.nan if k == 2 else 1.0), [w], opt,
                          max_inner=10, check_every=5)
    assert made == 2 and float(w.detach()) == pytest.approx(0.75)  # 0 -> 0.5 -> 0.75, then nan


# ------------------------------------------------------------------ the phase controller
def test_phase_ends_at_the_first_epoch_whose_mi_fell():
    phase = AggressivePhase()
    assert [phase.end_epoch(m) for m in (0.5, 1.0, 1.0, 1.2)] == [False] * 4  # ties go on
    assert phase.active
    assert phase.end_epoch(1.1) is True and not phase.active
    assert phase.end_epoch(0.2) is False and phase.mi == [0.5, 1.0, 1.0, 1.2, 1.1, 0.2]
    first = AggressivePhase()
    assert first.end_epoch(-0.01) is True  # He et al.: the first epoch is compared with 0
    again = AggressivePhase.from_state(phase.state())
    assert again == phase and AggressivePhase.from_state(None) == AggressivePhase()
    with pytest.raises(TypeError):
        AggressivePhase.from_state({"active": "yes", "mi": []})


# ------------------------------------------------------------------ the I_q estimator
def test_mutual_information_matches_a_brute_force_double_loop():
    g = torch.Generator().manual_seed(0)
    n, d = 7, 3
    mu = torch.randn(n, d, generator=g) * 2
    logvar = torch.randn(n, d, generator=g) * 0.5
    eps = torch.randn(n, d, generator=g)
    got = approximate_mutual_information(mu, logvar, eps, chunk=3)
    std = (0.5 * logvar.double()).exp()
    total = 0.0
    for i in range(n):
        qi = Normal(mu[i].double(), std[i])
        z = mu[i].double() + std[i] * eps[i].double()
        neg_entropy = -float(qi.entropy().sum())
        dens = [math.exp(float(Normal(mu[j].double(), std[j]).log_prob(z).sum()))
                for j in range(n)]
        total += neg_entropy - math.log(sum(dens) / n)
    assert got == pytest.approx(total / n, rel=1e-10, abs=1e-10)


def test_mutual_information_of_identical_or_far_apart_posteriors_in_closed_form():
    # with z_n = mu_n + eps_n and unit variances, log q(z_n|x_n) - E log q(z|x_n) =
    # -0.5 (|eps_n|^2 - D); identical posteriors: q(z) = N(0, I), I_q = mean 0.5(|eps|^2 - D);
    # posteriors 100 sigma apart: q(z_n) = q(z_n|x_n) / N, I_q = log N + the same mean
    n, d = 400, 2
    eps = torch.randn(n, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mc = float((0.5 * ((eps ** 2).sum(1) - d)).mean())
    same = approximate_mutual_information(torch.zeros(n, d), torch.zeros(n, d), eps)
    assert same == pytest.approx(mc, abs=1e-9)
    far_mu = torch.arange(n, dtype=torch.float64)[:, None].repeat(1, d) * 100
    far = approximate_mutual_information(far_mu, torch.zeros(n, d), eps)
    assert far == pytest.approx(math.log(n) + mc, abs=1e-9)


# ------------------------------------------------------------------ config and trainer
def test_config_keys_default_off_and_are_validated():
    t = RunConfig().train
    assert (t.aggressive, t.aggressive_max_inner, t.aggressive_check_every) == (False, 100, 10)
    with pytest.raises(ConfigError, match="train.aggressive_check_every=20 must be <= "):
        load_config("tiny/test", ["train.aggressive_check_every=20",
                                  "train.aggressive_max_inner=10"])
    with pytest.raises(ConfigError, match="train.aggressive_max_inner"):
        load_config("tiny/test", ["train.aggressive_max_inner=0"])
    cfg = load_config("tiny/digits_aggressive")
    assert cfg.train.aggressive and load_config("mnist/aggressive").train.aggressive
    assert load_config("mnist/aggressive").objective.eta == 0.0


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _trainer(tmp_path, name, digits, sets=()):
    cfg = load_config("tiny/test", ["train.max_epochs=2", "train.aggressive=true",
                                    "train.aggressive_max_inner=6",
                                    "train.aggressive_check_every=2", "train.batch_size=100",
                                    "train.checkpoint_every=5", *sets])
    run = RunDir(tmp_path / name)
    run.create("", {"image_shape": list(digits.image_shape)})
    return Trainer(cfg, digits, run, torch.device("cpu"), progress=False, log=lambda *a: None)


def _state(tr):
    return {**{f"m.{k}": v for k, v in tr.model.state_dict().items()},
            **{f"e.{k}": v for k, v in tr.ema.shadow.state_dict().items()}}


def test_aggressive_is_refused_under_ddp(tmp_path, digits):
    cfg = load_config("tiny/test", ["train.aggressive=true"])
    run = RunDir(tmp_path / "ddp")
    run.create("", {"image_shape": list(digits.image_shape)})
    with pytest.raises(MaevaeError, match="train.aggressive=true runs on one process only"):
        Trainer(cfg, digits, run, torch.device("cpu"), dist=DistInfo(rank=0, world=2),
                progress=False)


def test_aggressive_step_moves_the_decoder_only_in_the_outer_step(tmp_path, digits):
    tr = _trainer(tmp_path, "one", digits)
    tr.initialize()
    enc0 = [p.detach().clone() for p in tr.model.encoder.parameters()]
    dec0 = [p.detach().clone() for p in tr.model.decoder.parameters()]
    out = tr.train_step(torch.arange(100))
    assert 1 <= out["inner_steps"] <= 6
    # the encoder moved in the inner loop only: the fused Adam holds no encoder state
    assert any(not torch.equal(a, p) for a, p in zip(enc0, tr.model.encoder.parameters()))
    assert any(not torch.equal(a, p) for a, p in zip(dec0, tr.model.decoder.parameters()))
    enc_ids = {id(p) for p in tr.model.encoder.parameters()}
    assert not any(id(p) in enc_ids for p in tr.opt.state)
    assert set(map(id, tr.opt_enc.state)) <= enc_ids and tr.opt_enc.state
    assert all(p.grad is None for p in tr.model.encoder.parameters())


def test_aggressive_run_logs_mi_and_resumes_bit_identically(tmp_path, digits):
    ref = _trainer(tmp_path, "ref", digits)
    ref.initialize()
    ref.fit()
    rows = [r for r in ref.run.read_metrics() if r["kind"] == "val"]
    assert len(rows) == 2 and all(isinstance(r["mi"], float) for r in rows)
    assert ref.phase.mi == [r["mi"] for r in rows]
    train_rows = [r for r in ref.run.read_metrics() if r["kind"] == "train"]
    assert all(1 <= r["inner_steps"] <= 6 for r in train_rows if "inner_steps" in r)
    a = _trainer(tmp_path, "a", digits)
    a.initialize()
    a.fit(stop_at_step=11)  # mid-epoch 1 (13 steps per epoch of 1,350 digits)
    assert a.counters.step == 11
    b = Trainer(a.cfg, digits, a.run, torch.device("cpu"), progress=False, log=lambda *x: None)
    assert b.resume() and b.counters.step == 11 and b.opt_enc is not None
    assert b.opt_enc.state  # the encoder's Adam moments came back
    b.fit()
    assert b.counters.step == ref.counters.step
    sa, sr = _state(b), _state(ref)
    for k in sr:
        assert torch.equal(sa[k], sr[k]), k
    assert b.phase == ref.phase
    assert [r["mi"] for r in b.run.read_metrics() if r["kind"] == "val"] == ref.phase.mi


def test_a_checkpoint_without_aggressive_state_resumes_a_fresh_phase(tmp_path, digits):
    old = load_config("tiny/test", ["train.max_epochs=1", "train.batch_size=100"])
    run = RunDir(tmp_path / "old")
    run.create("", {"image_shape": list(digits.image_shape)})
    a = Trainer(old, digits, run, torch.device("cpu"), progress=False, log=lambda *x: None)
    a.initialize()
    a.fit(stop_at_step=3)
    assert "aggressive" not in a.state_json() and "optim_enc" not in a.state_files()
    new = load_config("tiny/test", ["train.max_epochs=1", "train.batch_size=100",
                                    "train.aggressive=true", "train.aggressive_max_inner=2",
                                    "train.aggressive_check_every=1"])
    b = Trainer(new, digits, run, torch.device("cpu"), progress=False, log=lambda *x: None)
    assert b.resume() and b.phase == AggressivePhase() and not b.opt_enc.state
    assert b.train_step(torch.arange(100))["inner_steps"] in (1, 2)


def test_phase_end_switches_to_the_ordinary_loop_and_resumes_across_it(tmp_path, digits,
                                                                        monkeypatch):
    # I_q 1.0 after epoch 1, 0.5 after epoch 2 (fell: the phase ends), 0.7 after epoch 3
    monkeypatch.setattr(Trainer, "approximate_mi",
                        lambda self: [1.0, 0.5, 0.7][self.counters.epoch])
    lines = []
    quick = ["train.max_epochs=3", "train.aggressive_max_inner=2",
             "train.aggressive_check_every=1"]
    ref = _trainer(tmp_path, "ref", digits, quick)
    ref.log = lines.append
    ref.initialize()
    ref.fit()
    assert "aggressive phase ended at epoch 2 (MI 1.000 -> 0.500)" in lines
    assert ref.phase == AggressivePhase(False, [1.0, 0.5, 0.7]) and ref.opt_enc is None
    rows = ref.run.read_metrics()
    assert all(("inner_steps" in r) == (r["epoch"] < 2) for r in rows if r["kind"] == "train")
    assert "optim_enc" not in ref.state_files()
    enc_ids = {id(p) for p in ref.model.encoder.parameters()}
    assert any(id(p) in enc_ids for p in ref.opt.state)  # the fused Adam trains it now
    a = _trainer(tmp_path, "a", digits, quick)
    a.initialize()
    a.fit(stop_at_step=30)  # epoch 3, after the phase ended
    b = Trainer(a.cfg, digits, a.run, torch.device("cpu"), progress=False, log=lambda *x: None)
    assert b.resume() and not b.phase.active and b.opt_enc is None
    b.fit()
    sa, sr = _state(b), _state(ref)
    assert all(torch.equal(sa[k], sr[k]) for k in sr)


def test_aggressive_composes_with_kl_annealing_and_the_mmd_term(tmp_path, digits):
    tr = _trainer(tmp_path, "combo", digits, ["objective.kl_anneal=linear",
                                             "objective.kl_anneal_steps=4",
                                             "objective.mmd_weight=10"])
    tr.initialize()
    outs = [tr.train_step(torch.arange(100)) for _ in range(2)]
    o = tr.cfg.objective
    for step, out in enumerate(outs):
        assert 1 <= out["inner_steps"] <= 6
        assert out["kl_weight"] == step / 4  # linear warm-up: beta_t = t / 4
        # the outer loss is the composed objective of the logged terms
        expected = (out["recon"] + out["kl_weight"] * out["kl"] + o.eta * out["diverse"]
                    + o.gamma * out["std"] + o.mmd_weight * out["mmd"])
        assert out["loss"] == pytest.approx(expected, rel=1e-5)
