"""MAE regularizers and ELBO pieces against closed forms and brute-force loops over pairs."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from maevae.config import ObjectiveConfig
from maevae.distributions import DiagGaussian, gaussian_log_prob, kl_diag_gaussian_standard_normal
from maevae.objectives import (
    free_bits_threshold,
    pairwise_kl,
    pairwise_total_kl,
    posterior_divergence,
)
from maevae.objectives import (
    training_loss as mae_loss,
)


def _batch(b=7, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(b, d, generator=g, dtype=torch.float64) * 1.5
    logvar = torch.randn(b, d, generator=g, dtype=torch.float64) * 0.8
    return mu, logvar


def _pair_kl_dims(mu, logvar, i, j):
    p = Normal(mu[i], (0.5 * logvar[i]).exp())
    q = Normal(mu[j], (0.5 * logvar[j]).exp())
    return kl_divergence(p, q)  # [D]


def test_pairwise_kl_matches_torch_distributions_for_every_pair():
    mu, logvar = _batch()
    kl = pairwise_kl(mu, logvar)
    total = pairwise_total_kl(mu, logvar)
    b = mu.shape[0]
    for i in range(b):
        for j in range(b):
            ref = torch.zeros(mu.shape[1], dtype=mu.dtype) if i == j else _pair_kl_dims(
                mu, logvar, i, j)
            torch.testing.assert_close(kl[i, j], ref, rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(total[i, j], ref.sum(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("form", ["code", "paper"])
def test_mpd_std_diverse_match_explicit_loops(form):
    mu, logvar = _batch(b=6, d=4, seed=3)
    b, d = mu.shape
    pairs = [(i, j) for i in range(b) for j in range(b) if i != j]
    per_pair = {p: _pair_kl_dims(mu, logvar, *p) for p in pairs}
    m_k = sum(per_pair.values()) / len(pairs)  # [D]
    mpd = float(m_k.sum())
    totals = [float(v.sum()) for v in per_pair.values()]
    mean_t = sum(totals) / len(totals)
    std = math.sqrt(sum((t - mean_t) ** 2 for t in totals) / (len(totals) - 1))
    if form == "code":
        diverse = sum(math.log1p(math.exp(-float(m))) for m in m_k)
    else:
        diverse = sum(math.log1p(math.exp(-float(v[k]))) for v in per_pair.values()
                      for k in range(d)) / len(pairs)
    out = posterior_divergence(mu, logvar, form=form)
    assert out.mpd.item() == pytest.approx(mpd, rel=1e-6)
    assert out.std.item() == pytest.approx(std, rel=1e-5)
    assert out.diverse.item() == pytest.approx(diverse, rel=1e-6)
    assert mean_t == pytest.approx(mpd, rel=1e-12)


def test_code_form_is_below_paper_form_by_jensen():
    mu, logvar = _batch(b=10, d=8, seed=5)
    assert posterior_divergence(mu, logvar, "code").diverse < posterior_divergence(
        mu, logvar, "paper").diverse


def test_diverse_gradient_weights_differ_between_forms():
    mu, logvar = _batch(b=5, d=3, seed=1)
    grads = []
    for form in ("code", "paper"):
        m = mu.clone().requires_grad_(True)
        posterior_divergence(m, logvar, form).diverse.backward()
        grads.append(m.grad)
    assert not torch.allclose(grads[0], grads[1])


def test_identical_posteriors_have_zero_mpd_and_std():
    mu = torch.ones(4, 3)
    logvar = torch.zeros(4, 3)
    out = posterior_divergence(mu, logvar)
    assert out.mpd.item() == pytest.approx(0.0, abs=1e-6)
    assert out.std.item() == pytest.approx(0.0, abs=1e-3)
    assert out.diverse.item() == pytest.approx(3 * math.log(2), rel=1e-6)


def test_analytic_kl_vs_torch_and_monte_carlo():
    mu, logvar = _batch(b=3, d=4, seed=2)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0))
    torch.testing.assert_close(kl_diag_gaussian_standard_normal(mu, logvar), ref)
    q = DiagGaussian(mu, logvar)
    z = q.rsample(200_000, torch.Generator().manual_seed(0))  # [S, B, D]
    mc = q.log_prob(z) - Normal(0.0, 1.0).log_prob(z).sum(-1)  # [S, B]
    se = mc.std(0) / math.sqrt(z.shape[0])
    diff = (mc.mean(0) - ref.sum(-1)).abs()
    assert bool((diff < 4 * se).all()), (diff, se)


def test_gaussian_log_prob_matches_torch():
    mu, logvar = _batch(b=4, d=3)
    z = torch.randn(2, 4, 3, dtype=torch.float64)
    ref = Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    torch.testing.assert_close(gaussian_log_prob(z, mu, logvar), ref)


def test_free_bits_thresholds_and_zero_gradient_below():
    assert free_bits_threshold(ObjectiveConfig(), 784) == 0.0
    cfg = ObjectiveConfig(free_bits=0.01, free_bits_mode="per_datadim")
    assert free_bits_threshold(cfg, 784) == pytest.approx(7.84)
    cfg_total = ObjectiveConfig(free_bits=3.0, free_bits_mode="batch_total")
    assert free_bits_threshold(cfg_total, 784) == 3.0
    mu, logvar = _batch(b=4, d=2)
    kl = torch.full((4,), 2.0, requires_grad=True)  # mean 2 < 3: clamped
    recon = torch.zeros(4)
    out = mae_loss(recon, kl, mu, logvar, cfg_total, 784)
    out.loss.backward()
    assert out.loss.item() == pytest.approx(3.0)
    assert torch.all(kl.grad == 0)
    assert out.kl.item() == pytest.approx(2.0)


def test_mae_loss_composition():
    mu, logvar = _batch(b=8, d=4, seed=7)
    recon = torch.arange(8, dtype=torch.float64)
    kl = torch.full((8,), 5.0, dtype=torch.float64)
    cfg = ObjectiveConfig(eta=2.0, gamma=0.5)
    out = mae_loss(recon, kl, mu, logvar, cfg, 784)
    d = posterior_divergence(mu, logvar)
    expect = recon.mean() + 5.0 + 2.0 * d.diverse + 0.5 * d.std
    assert out.loss.item() == pytest.approx(expect.item(), rel=1e-9)
    assert out.elbo.item() == pytest.approx(3.5 + 5.0)


def test_theorem_1_mpd_is_symmetric_kl_to_the_batch_mixture():
    """Eq. 4 (independent pairs, i = j included) equals
    E_x[KL(q(z|x) || q(z)) + KL(q(z) || q(z|x))] with q(z) the batch mixture (Eq. 10)."""
    g = torch.Generator().manual_seed(11)
    b, d = 6, 2
    mu = torch.randn(b, d, generator=g, dtype=torch.float64)
    logvar = torch.randn(b, d, generator=g, dtype=torch.float64) * 0.5
    lhs = pairwise_total_kl(mu, logvar).sum() / b**2  # diagonal terms are 0

    n = 100_000
    comps = [Normal(mu[i], (0.5 * logvar[i]).exp()) for i in range(b)]

    def log_q_each(z):  # z [N, D] -> [N, B]
        return torch.stack([c.log_prob(z).sum(-1) for c in comps], dim=1)

    def log_mix(z):
        return torch.logsumexp(log_q_each(z), dim=1) - math.log(b)

    torch.manual_seed(0)
    # E_x KL(q_x || q): x uniform over the batch, z ~ q_x
    idx = torch.randint(0, b, (n,))
    z1 = mu[idx] + (0.5 * logvar[idx]).exp() * torch.randn(n, d, dtype=torch.float64)
    f1 = log_q_each(z1).gather(1, idx[:, None]).squeeze(1) - log_mix(z1)
    # E_x KL(q || q_x) = E_{z ~ q}[log q(z) - mean_x log q_x(z)]
    idx2 = torch.randint(0, b, (n,))
    z2 = mu[idx2] + (0.5 * logvar[idx2]).exp() * torch.randn(n, d, dtype=torch.float64)
    f2 = log_mix(z2) - log_q_each(z2).mean(1)
    rhs = f1.mean() + f2.mean()
    se = math.sqrt(f1.var().item() / n + f2.var().item() / n)
    assert abs(lhs.item() - rhs.item()) < 4 * se, (lhs.item(), rhs.item(), se)
    # and the code's off-diagonal MPD is the same quantity rescaled by B / (B - 1)
    assert posterior_divergence(mu, logvar).mpd.item() == pytest.approx(
        lhs.item() * b / (b - 1), rel=1e-9)


def test_softplus_identity_with_logsigmoid():
    m = torch.linspace(-5, 5, 11)
    torch.testing.assert_close(F.softplus(-m), -F.logsigmoid(m))
