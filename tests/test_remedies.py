"""Posterior-collapse remedies: KL weight and annealing, per-dimension free bits, BN-VAE and
the InfoVAE MMD term, each pinned to a hand computation or a brute-force loop."""

import dataclasses
import math

import pytest
import torch

from maevae.config import ObjectiveConfig, RunConfig, apply_overrides, load_config
from maevae.distributions import (
    bn_vae_kl_lower_bound,
    default_mmd_bandwidth,
    kl_diag_gaussian_standard_normal,
    mmd2,
)
from maevae.errors import ConfigError, MaevaeError
from maevae.kl_schedule import kl_weight
from maevae.models.build import build_model
from maevae.nn.batchnorm import FixedScaleBatchNorm
from maevae.objectives import free_bits_per_dim, posterior_divergence, training_loss
from maevae.train.ema import EMA


def _obj(**kw) -> ObjectiveConfig:
    return dataclasses.replace(ObjectiveConfig(), **kw)


# ---------------------------------------------------------------- KL weight and annealing
def test_constant_kl_weight_is_beta_at_every_step():
    assert [kl_weight(_obj(), t) for t in (0, 7, 10**6)] == [1.0, 1.0, 1.0]
    assert [kl_weight(_obj(kl_weight=0.5), t) for t in (0, 7, 10**6)] == [0.5, 0.5, 0.5]


def test_linear_warm_up_at_hand_computed_steps():
    cfg = _obj(kl_anneal="linear", kl_anneal_steps=100)
    assert [kl_weight(cfg, t) for t in (0, 25, 50, 100, 150)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    half = _obj(kl_anneal="linear", kl_anneal_steps=100, kl_weight=0.5)
    assert [kl_weight(half, t) for t in (0, 50, 100, 150)] == [0.0, 0.25, 0.5, 0.5]


def test_cyclical_schedule_at_cycle_boundaries_and_mid_ramp():
    # L = 40, R = 0.5: beta ramps over 20 steps, then holds 1 for 20 steps, then restarts
    cfg = _obj(kl_anneal="cyclical", kl_anneal_steps=40, kl_cycle_ratio=0.5)
    got = [kl_weight(cfg, t) for t in (0, 5, 10, 20, 39, 40, 50, 60, 80, 130)]
    assert got == [0.0, 0.25, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 0.0, 0.5]
    # after kl_cycles = 2 cycles (t >= 80) beta stays at its full value
    two = _obj(kl_anneal="cyclical", kl_anneal_steps=40, kl_cycle_ratio=0.5, kl_cycles=2,
               kl_weight=2.0)
    assert [kl_weight(two, t) for t in (10, 79, 80, 90, 10**5)] == [1.0, 2.0, 2.0, 2.0, 2.0]
    # R = 1: a ramp over the whole cycle; 49-step cycles as in tiny/digits_kl_anneal_cyclical
    ramp = _obj(kl_anneal="cyclical", kl_anneal_steps=49, kl_cycle_ratio=1.0)
    assert kl_weight(ramp, 49 + 7) == pytest.approx(7 / 49)


def test_kl_weight_scales_exactly_the_kl_term():
    torch.manual_seed(0)
    recon, kl = torch.rand(6) * 50, torch.rand(6) * 10
    mu, logvar = torch.randn(6, 3), torch.randn(6, 3) * 0.3
    r, k = recon.mean(), kl.mean()
    plain = training_loss(recon, kl, mu, logvar, _obj(), 64, kl_weight=0.3)
    assert torch.equal(plain.loss, r + 0.3 * k)
    assert torch.equal(plain.elbo, r + k)  # the logged ELBO is unweighted
    fb = training_loss(recon, kl, mu, logvar, _obj(free_bits=50.0, free_bits_mode="batch_total"),
                       64, kl_weight=0.3)
    assert torch.equal(fb.loss, r + 0.3 * torch.tensor(50.0))  # beta after the clamp
    mae = _obj(eta=1.0, gamma=0.5)
    a = training_loss(recon, kl, mu, logvar, mae, 64, kl_weight=0.25)
    b = training_loss(recon, kl, mu, logvar, mae, 64)
    assert float(b.loss - a.loss) == pytest.approx(0.75 * float(k), rel=1e-6)
    assert float(a.kl_weight) == 0.25 and b.kl_weight is None


def test_defaults_leave_the_loss_and_its_logged_terms_as_before():
    torch.manual_seed(1)
    recon, kl = torch.rand(5) * 50, torch.rand(5) * 10
    mu, logvar = torch.randn(5, 4), torch.randn(5, 4) * 0.3
    cfg = _obj(eta=1.0, gamma=0.5)
    lt = training_loss(recon, kl, mu, logvar, cfg, 64)
    d = posterior_divergence(mu, logvar)
    assert torch.equal(lt.loss, recon.mean() + kl.mean() + 1.0 * d.diverse + 0.5 * d.std)
    assert set(lt.scalars()) == {"loss", "recon", "kl", "elbo", "mpd", "std", "diverse",
                                 "smooth"}


# ---------------------------------------------------------------- free bits per dimension
def test_per_dim_free_bits_against_a_hand_computed_clamp():
    kl = torch.tensor([[0.00, 0.30, 2.0, 0.10],
                       [0.20, 0.10, 1.0, 0.05],
                       [0.10, 0.20, 3.0, 0.00]], requires_grad=True)  # [B = 3, D = 4]
    # batch means: 0.1, 0.2, 2.0, 0.05 -> max(0.25, .) = 0.25, 0.25, 2.0, 0.25
    out = free_bits_per_dim(kl, 0.25)
    assert float(out.detach()) == pytest.approx(2.75)
    out.backward()
    assert torch.allclose(kl.grad, torch.tensor([[0.0, 0.0, 1 / 3, 0.0]] * 3))
    # in the loss: recon + that, times beta
    recon, mu, logvar = torch.full((3,), 10.0), torch.zeros(3, 4), torch.zeros(3, 4)
    cfg = _obj(free_bits=0.25, free_bits_mode="per_dim")
    lt = training_loss(recon, kl.detach().sum(1), mu, logvar, cfg, 64, kl_weight=0.5,
                       kl_per_dim=kl.detach())
    assert float(lt.loss) == pytest.approx(10.0 + 0.5 * 2.75)
    assert float(lt.kl) == pytest.approx(float(kl.detach().sum(1).mean()))  # before the clamp
    with pytest.raises(MaevaeError, match="model.prior.type=normal"):
        training_loss(recon, kl.detach().sum(1), mu, logvar, cfg, 64)


def test_terms_give_the_per_dim_kl_of_a_normal_prior_only():
    normal = load_config("tiny/test", ["model.prior.type=normal"])
    model = build_model(normal.model, (1, 8, 8)).eval()
    x = torch.bernoulli(torch.full((3, 1, 8, 8), 0.4))
    t = model.terms(x)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(t.mu, (0.5 * t.logvar).exp()), torch.distributions.Normal(0, 1))
    assert t.kl_per_dim.shape == (3, 4)
    assert torch.allclose(t.kl_per_dim, ref, atol=1e-5)
    assert torch.equal(t.kl_per_dim.sum(-1), t.kl)
    flow = build_model(load_config("tiny/test").model, (1, 8, 8)).eval()
    assert flow.terms(x).kl_per_dim is None


def test_terms_carry_the_first_sample_into_the_prior_base_space():
    x = torch.bernoulli(torch.full((3, 1, 8, 8), 0.4))
    eps = torch.randn(2, 3, 4)  # [S, B, D]
    flow = build_model(load_config("tiny/test").model, (1, 8, 8)).eval()
    t = flow.terms(x, 2, eps=eps)
    q = flow.posterior(x)
    z = q.mu + (0.5 * q.logvar).exp() * eps  # [S, B, D]
    assert torch.allclose(t.z_base, flow.prior.to_base(z[0])[0], atol=1e-6)
    # the KL is the same Monte Carlo estimate as before the base space was returned
    assert torch.allclose(t.kl, (q.log_prob(z) - flow.prior.log_prob(z)).mean(0), atol=1e-5)
    normal = build_model(load_config("tiny/test", ["model.prior.type=normal"]).model,
                         (1, 8, 8)).eval()
    q = normal.posterior(x)
    assert torch.allclose(normal.terms(x, 2, eps=eps).z_base,
                          q.mu + (0.5 * q.logvar).exp() * eps[0], atol=1e-6)


def test_flow_prior_terms_keep_the_old_gradients_bit_for_bit():
    """Returning the base-space point must not change a default run: the gradients equal
    those of the old formula kl = (log q(z) - log p(z)).mean(0), bit for bit."""
    model = build_model(load_config("tiny/test").model, (1, 8, 8))
    x = torch.bernoulli(torch.full((6, 1, 8, 8), 0.4))
    eps = torch.randn(1, 6, 4)

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    t = model.terms(x, 1, eps=eps)
    new = grads(t.recon.mean() + t.kl.mean())
    q = model.encoder(x)
    z = q.mu + (0.5 * q.logvar).exp() * eps
    recon = -model.decoder.log_prob(x, z).mean(0)
    kl = (q.log_prob(z) - model.prior.log_prob(z)).mean(0)
    old = grads(recon.mean() + kl.mean())
    assert len(new) == len(old) and all(torch.equal(a, b) for a, b in zip(new, old))


# ---------------------------------------------------------------- BN-VAE
def test_bn_vae_layer_gives_the_closed_form_second_moment():
    torch.manual_seed(2)
    gamma, eps, d = 0.6, 1e-5, 5
    bn = FixedScaleBatchNorm(d, gamma).train()
    with torch.no_grad():
        bn.shift.copy_(torch.tensor([0.0, 0.5, -1.0, 0.2, 2.0]))
    x = torch.randn(64, d) * torch.tensor([0.1, 1.0, 3.0, 0.01, 5.0]) + 4.0
    y = bn(x).detach()
    v = x.var(0, unbiased=False)  # BatchNorm's batch variance in train mode
    beta = bn.shift.detach()
    assert torch.allclose(y.mean(0), beta, atol=1e-5)
    # mean_b y_k^2 = beta_k^2 + gamma^2 v_k / (v_k + eps), exactly
    half_second = 0.5 * y.pow(2).mean(0).sum()
    exact = 0.5 * (beta.pow(2) + gamma ** 2 * v / (v + eps)).sum()
    assert float(half_second) == pytest.approx(float(exact), rel=1e-5)
    bound = bn_vae_kl_lower_bound(gamma, beta)
    assert float(bound) == pytest.approx(0.5 * (d * 0.36 + float(beta.pow(2).sum())))
    assert float(exact) <= float(bound)
    assert float(bound - exact) == pytest.approx(float((0.5 * gamma ** 2 * eps / (v + eps)).sum()),
                                                 rel=1e-3)  # only BatchNorm's eps apart
    # the batch's mean analytic KL to N(0, I), for any variances, stays above the floor
    logvar = torch.randn(64, d)
    kl = kl_diag_gaussian_standard_normal(y, logvar).sum(-1).mean()
    assert float(kl) >= float(half_second) - 1e-5
    assert float(kl) >= d * gamma ** 2 / 2 * float((v / (v + eps)).min())
    # eval mode: the running statistics (momentum 0.1 from mean 0, unbiased var 1)
    bn.eval()
    rm, rv = 0.1 * x.mean(0), 0.9 + 0.1 * x.var(0, unbiased=True)
    assert torch.allclose(bn(x), gamma * (x - rm) / torch.sqrt(rv + eps) + beta, atol=1e-4)


def test_bn_vae_encoder_initialises_saves_loads_and_is_absent_when_off():
    cfg = load_config("tiny/test", ["model.encoder.bn_mu_scale=0.5", "model.prior.type=normal"])
    model = build_model(cfg.model, (1, 8, 8))
    x = torch.bernoulli(torch.full((40, 1, 8, 8), 0.4))
    model.initialize(x)  # DDI runs in eval mode, through the running statistics
    model.train()
    mu = model.posterior(x).mu
    assert torch.allclose(mu.mean(0), torch.zeros(4), atol=1e-5)  # shift starts at 0
    assert torch.allclose(mu.pow(2).mean(0), torch.full((4,), 0.25), atol=1e-3)
    state = model.state_dict()
    assert {"encoder.mu_bn.shift", "encoder.mu_bn.norm.running_mean"} <= set(state)
    fresh = build_model(cfg.model, (1, 8, 8))
    fresh.load_state_dict(state)
    assert torch.equal(fresh.encoder.mu_bn.norm.running_var, model.encoder.mu_bn.norm.running_var)
    plain = build_model(load_config("tiny/test").model, (1, 8, 8))
    assert not any("mu_bn" in k for k in plain.state_dict())  # old checkpoints load as before
    # the EMA shadow follows the running statistics (it is evaluated in eval mode)
    ema = EMA(model, 0.9)
    model(x)
    ema.update(model)
    assert torch.equal(ema.shadow.encoder.mu_bn.norm.running_mean,
                       model.encoder.mu_bn.norm.running_mean)


# ---------------------------------------------------------------- MMD
def _k(a, b, kernel, c):
    sq = sum((float(p) - float(q)) ** 2 for p, q in zip(a, b))
    return math.exp(-sq / c) if kernel == "rbf" else c / (c + sq)


def _brute_mmd(x, y, kernel, c, estimator):
    n, m = len(x), len(y)
    if estimator == "biased":
        xx = sum(_k(x[i], x[j], kernel, c) for i in range(n) for j in range(n)) / n ** 2
        yy = sum(_k(y[i], y[j], kernel, c) for i in range(m) for j in range(m)) / m ** 2
    else:
        xx = sum(_k(x[i], x[j], kernel, c) for i in range(n) for j in range(n)
                 if i != j) / (n * (n - 1))
        yy = sum(_k(y[i], y[j], kernel, c) for i in range(m) for j in range(m)
                 if i != j) / (m * (m - 1))
    xy = sum(_k(x[i], y[j], kernel, c) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_mmd_matches_a_double_loop_over_pairs(kernel, estimator):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(7, 3, generator=g, dtype=torch.float64) + 0.5
    y = torch.randn(5, 3, generator=g, dtype=torch.float64)
    for c in (None, 0.7):
        got = mmd2(x, y, kernel, c, estimator)
        want = _brute_mmd(x.tolist(), y.tolist(), kernel, 2 * 3 if c is None else c, estimator)
        assert float(got) == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_mmd_sanity():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(50, 4, generator=g)
    assert float(mmd2(x, x, "imq", estimator="biased")) == 0.0
    assert float(mmd2(x, x, "rbf", estimator="biased")) == 0.0
    assert default_mmd_bandwidth(4) == 8.0
    same = mmd2(x, torch.randn(50, 4, generator=g))
    shifted = mmd2(x, torch.randn(50, 4, generator=g) + 2.0)
    assert abs(float(same)) < 0.02 < float(shifted)
    with pytest.raises(ValueError, match="at least 2"):
        mmd2(x[:1], x)


def test_mmd_term_in_the_loss():
    torch.manual_seed(5)
    recon, kl = torch.rand(6) * 50, torch.rand(6) * 10
    mu, logvar = torch.randn(6, 3), torch.randn(6, 3) * 0.3
    z, zp = torch.randn(6, 3), torch.randn(6, 3)
    cfg = _obj(mmd_weight=10.0, mmd_kernel="rbf", mmd_estimator="biased")
    lt = training_loss(recon, kl, mu, logvar, cfg, 64, z=z, z_prior=zp)
    m = mmd2(z, zp, "rbf", None, "biased")
    assert torch.equal(lt.mmd, m)
    assert float(lt.loss) == pytest.approx(float(recon.mean() + kl.mean() + 10.0 * m))
    assert "mmd" in lt.scalars()
    with pytest.raises(MaevaeError, match="z_prior"):
        training_loss(recon, kl, mu, logvar, cfg, 64)


# ---------------------------------------------------------------- config
@pytest.mark.parametrize(("sets", "message"), [
    (["objective.free_bits_mode=per_dim", "objective.free_bits=0.1"],
     "needs model.prior.type=normal"),
    (["objective.kl_anneal=linear"], "kl_anneal_steps >= 1"),
    (["objective.kl_anneal=cyclical", "objective.kl_anneal_steps=10",
      "objective.kl_cycle_ratio=0"], "objective.kl_cycle_ratio"),
    (["objective.kl_weight=-1"], "objective.kl_weight"),
    (["objective.mmd_weight=1", "train.batch_size=1"], "batch_size >= 2"),
    (["objective.mmd_kernel=laplace"], "allowed: 'imq', 'rbf'"),
    (["objective.mmd_bandwidth=0"], "objective.mmd_bandwidth"),
    (["model.encoder.bn_mu_scale=0"], "model.encoder.bn_mu_scale"),
    (["model.encoder.bn_mu_scale=0.5", "train.batch_size=1"], "batch_size >= 2"),
])
def test_remedy_config_errors_name_the_key(sets, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(RunConfig(), sets)


def test_the_remedy_presets_set_their_remedy():
    o = {n: load_config(n) for n in ("mnist/beta_0.5", "mnist/kl_anneal_linear",
                                     "mnist/kl_anneal_cyclical", "mnist/free_bits_per_dim",
                                     "mnist/bn_vae", "mnist/infovae_mmd",
                                     "tiny/digits_kl_anneal_cyclical")}
    assert o["mnist/beta_0.5"].objective.kl_weight == 0.5
    assert o["mnist/kl_anneal_linear"].objective.kl_anneal_steps == 10 * 580
    assert o["mnist/kl_anneal_cyclical"].objective.kl_cycles == 4
    assert o["mnist/free_bits_per_dim"].model.prior.type == "normal"
    assert o["mnist/bn_vae"].model.encoder.bn_mu_scale == 0.6
    assert o["mnist/infovae_mmd"].objective.mmd_weight == 1000.0
    cyc = o["tiny/digits_kl_anneal_cyclical"]
    assert cyc.objective.kl_cycles * cyc.objective.kl_anneal_steps >= 15 * 13


def test_a_paper_preset_with_a_remedy_gets_no_paper_row():
    from maevae.evaluate.compare import paper_key_for

    assert paper_key_for(load_config("mnist/vlae")) == "mnist/vlae"
    for sets in (["objective.kl_weight=0.5"], ["objective.mmd_weight=1"],
                 ["model.encoder.bn_mu_scale=0.6"],
                 ["objective.kl_anneal=linear", "objective.kl_anneal_steps=5"]):
        assert paper_key_for(load_config("mnist/vlae", sets)) is None, sets


# ---------------------------------------------------------------- one trainer step each
@pytest.fixture(scope="module")
def digits():
    from maevae.data import load_dataset

    return load_dataset("digits")


@pytest.mark.parametrize("sets", [
    ["objective.kl_anneal=linear", "objective.kl_anneal_steps=10"],
    ["objective.kl_weight=0.5"],
    ["model.prior.type=normal", "objective.free_bits_mode=per_dim", "objective.free_bits=0.2"],
    ["model.encoder.bn_mu_scale=0.6"],
    ["objective.mmd_weight=100"],
], ids=["linear", "beta", "per_dim", "bn_vae", "mmd"])
def test_one_trainer_step_with_each_remedy(tmp_path, digits, sets):
    from maevae.runs.directory import RunDir
    from maevae.train.trainer import Trainer

    cfg = load_config("tiny/test", ["train.max_steps=2", *sets])
    run = RunDir(tmp_path / "run")
    run.create("", {"image_shape": list(digits.image_shape)})
    tr = Trainer(cfg, digits, run, torch.device("cpu"), progress=False, log=lambda *a: None)
    tr.initialize()
    first, second = tr.train_step(torch.arange(20)), tr.train_step(torch.arange(20, 40))
    assert first is not None and second is not None
    assert math.isfinite(first["loss"]) and math.isfinite(second["loss"])
    if "objective.kl_anneal=linear" in sets:
        assert (first["kl_weight"], second["kl_weight"]) == (0.0, 0.1)
        assert first["loss"] == pytest.approx(first["recon"] + first["diverse"]
                                              + 0.5 * first["std"], rel=1e-5)
    if "objective.kl_weight=0.5" in sets:
        assert first["kl_weight"] == 0.5
    if "objective.mmd_weight=100" in sets:
        assert math.isfinite(first["mmd"])
    else:
        assert "mmd" not in first


# ---------------------------------------------------------------- two processes
_DDP_SETS = ["model.prior.type=normal", "objective.free_bits_mode=per_dim",
             "objective.free_bits=0.3", "objective.mmd_weight=10"]


def _ddp_setup():
    from maevae.config import load_config as load

    cfg = load("tiny/test", _DDP_SETS)
    torch.manual_seed(0)
    model = build_model(cfg.model, (1, 8, 8)).double()
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(12, 1, 8, 8, generator=g) < 0.4).double()
    model.initialize(x)
    eps = torch.randn(1, 12, 4, generator=g, dtype=torch.float64)
    z_prior = torch.randn(12, 4, generator=g, dtype=torch.float64)
    return cfg, model, x, eps, z_prior


def _ddp_worker(rank: int, world: int, folder: str) -> None:
    import torch.distributed as dist
    from safetensors.torch import save_file

    from maevae.train.distributed import DistInfo
    from maevae.train.trainer import compute_loss

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank,
                            world_size=world)
    try:
        cfg, model, x, eps, z_prior = _ddp_setup()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        sl = slice(rank * 6, (rank + 1) * 6)
        lt = compute_loss(ddp, x[sl], eps[:, sl], cfg, 64, DistInfo(rank, world),
                          kl_weight=0.7, z_prior=z_prior)
        lt.loss.backward()
        out = {f"grad.{n}": p.grad for n, p in model.named_parameters() if p.grad is not None}
        out["loss"] = lt.loss.detach().reshape(1)
        out["mmd"] = lt.mmd.detach().reshape(1)
        save_file({k: v.contiguous() for k, v in out.items()}, f"{folder}/rank{rank}.safetensors")
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_see_the_global_batch_in_per_dim_free_bits_and_mmd(tmp_path):
    import os

    import torch.distributed as dist
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    from maevae.train.distributed import DistInfo
    from maevae.train.trainer import compute_loss

    if not dist.is_available():
        pytest.skip("torch.distributed unavailable")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    mp.spawn(_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    cfg, model, x, eps, z_prior = _ddp_setup()
    ref = compute_loss(model, x, eps, cfg, 64, DistInfo(), kl_weight=0.7, z_prior=z_prior)
    ref.loss.backward()
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2)]
    for r in ranks:  # the MMD of the whole global batch on every rank
        torch.testing.assert_close(r["mmd"], ref.mmd.detach().reshape(1))
    for name, p in model.named_parameters():
        for r in ranks:
            torch.testing.assert_close(r[f"grad.{name}"], p.grad, rtol=1e-5, atol=1e-5)
    mean_loss = sum(r["loss"] for r in ranks) / 2
    torch.testing.assert_close(mean_loss, ref.loss.detach().reshape(1), rtol=1e-5, atol=1e-5)


def test_a_run_with_the_remedies_resumes_bit_identically(tmp_path, digits):
    """BN-VAE's running statistics (model and EMA), the annealed beta and the MMD draws
    all continue exactly after an interruption."""
    from maevae.runs.directory import RunDir
    from maevae.train.trainer import Trainer

    sets = ["train.max_steps=24", "model.encoder.bn_mu_scale=0.6", "objective.kl_anneal=cyclical",
            "objective.kl_anneal_steps=10", "objective.mmd_weight=10", "train.log_every=1"]
    cfg = load_config("tiny/test", sets)

    def trainer(name):
        run = RunDir(tmp_path / name)
        if not run.path.exists():
            run.create("", {"image_shape": list(digits.image_shape)})
        return Trainer(cfg, digits, run, torch.device("cpu"), progress=False,
                       log=lambda *a: None)

    ref = trainer("ref")
    ref.initialize()
    ref.fit()
    a = trainer("a")
    a.initialize()
    a.fit(stop_at_step=13)
    b = trainer("a")
    assert b.resume() and b.counters.step == 13
    b.fit()
    for mine, theirs in ((b.model, ref.model), (b.ema.shadow, ref.ema.shadow)):
        sa, sr = mine.state_dict(), theirs.state_dict()
        assert "encoder.mu_bn.norm.running_mean" in sr
        assert all(torch.equal(sa[k], sr[k]) for k in sr)
    rows = [r for r in b.run.read_metrics() if r["kind"] == "train"]
    assert [r["kl_weight"] for r in rows if r["step"] in (1, 11, 16)] == [0.0, 0.0, 1.0]
    assert all(math.isfinite(r["mmd"]) for r in rows)
