"""Latent diagnostics against closed forms and brute-force loops with torch.distributions."""

import math
import statistics

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from maevae.errors import MaevaeError
from maevae.evaluate.diagnostics import (
    active_units,
    kl_per_dim_standard_normal,
    mutual_information,
    pairwise_gaussian_kl,
    pairwise_mpd_std,
)


def random_posteriors(n, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(n, d, generator=g, dtype=torch.float64) * 1.5
    logvar = torch.randn(n, d, generator=g, dtype=torch.float64) * 0.7 - 0.5
    return mu, logvar


def test_active_units_counts_dims_with_variance_above_threshold():
    signs = np.array([1.0, -1.0] * 50)  # population variance of a * signs is a^2
    mu = np.stack([
        3.0 * signs,                    # var 9      -> active
        np.full(100, 4.0),              # var 0      -> inactive
        math.sqrt(0.005) * signs,       # var 0.005  -> inactive at 0.01
        math.sqrt(0.02) * signs,        # var 0.02   -> active
    ], axis=1)
    assert active_units(mu) == 2
    assert active_units(mu, threshold=0.001) == 3
    assert active_units(torch.from_numpy(mu), threshold=10.0) == 0


def test_kl_per_dim_matches_torch_distributions():
    mu, logvar = random_posteriors(64, 5)
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).mean(0)
    got = kl_per_dim_standard_normal(mu.numpy(), logvar.numpy())
    assert got.shape == (5,)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-12, atol=1e-12)


def test_mutual_information_saturates_at_log_n_for_separated_posteriors():
    n = 50
    mu = np.zeros((n, 3))
    mu[:, 0] = 100.0 * np.arange(n)
    logvar = np.full((n, 3), -10.0)
    mi, se = mutual_information(mu, logvar, n_samples=3, seed=0)
    assert mi == pytest.approx(math.log(n), abs=1e-9)
    assert 0.0 <= se < 1e-9


def test_mutual_information_is_zero_for_identical_posteriors():
    mu = np.tile([[0.3, -1.0]], (40, 1))
    logvar = np.tile([[0.2, -0.4]], (40, 1))
    mi, se = mutual_information(mu, logvar, n_samples=2, seed=1)
    assert abs(mi) < 1e-12 and se < 1e-12


def test_mutual_information_brute_force_and_chunking():
    mu, logvar = random_posteriors(12, 3, seed=4)
    mu, logvar = mu.numpy(), logvar.numpy()
    est = mutual_information(mu, logvar, n_samples=2, seed=9, chunk=1)
    # Chunking changes only the order of float64 matmul / logsumexp summations over N = 12
    # components of size ~log 12: their rounding is ~N·eps·|term| ≈ 1e-14, far below 1e-12.
    whole = mutual_information(mu, logvar, n_samples=2, seed=9, chunk=10_000)
    assert est.value == pytest.approx(whole.value, rel=1e-12)
    assert est.stderr == pytest.approx(whole.stderr, rel=1e-12)
    # Rebuild the same draws and score them with torch.distributions, one at a time.
    rng = np.random.default_rng(9)
    terms = []
    for i in range(12):
        eps = rng.standard_normal((1, 2, 3))[0]  # chunk=1: one row, 2 samples, 3 dims
        for s in range(2):
            z = torch.from_numpy(mu[i] + np.exp(0.5 * logvar[i]) * eps[s])
            comps = Normal(torch.from_numpy(mu), torch.from_numpy(np.exp(0.5 * logvar)))
            log_all = comps.log_prob(z).sum(1)  # [N]
            terms.append(float(log_all[i] - (torch.logsumexp(log_all, 0) - math.log(12))))
    assert est.value == pytest.approx(np.mean(terms), rel=1e-10)
    assert 0 < est.value <= math.log(12)
    assert est.stderr > 0
    single = mutual_information(mu, logvar, n_samples=1, seed=0)
    assert math.isfinite(single.stderr) and single.stderr > 0


def brute_force_mpd_std(mu, logvar):
    """Explicit double loop over ordered pairs i != j with torch.distributions."""
    b, d = mu.shape
    std = (0.5 * logvar).exp()
    per_dim = torch.zeros(d, dtype=torch.float64)
    totals = []
    for i in range(b):
        for j in range(b):
            if i == j:
                continue
            kl = kl_divergence(Normal(mu[i], std[i]), Normal(mu[j], std[j]))  # [D]
            per_dim += kl
            totals.append(float(kl.sum()))
    mpd = float((per_dim / (b * (b - 1))).sum())
    return mpd, statistics.stdev(totals)


def test_pairwise_kl_tensor_matches_torch():
    mu, logvar = random_posteriors(5, 3, seed=2)
    kl = pairwise_gaussian_kl(mu, logvar)
    std = (0.5 * logvar).exp()
    for i in range(5):
        for j in range(5):
            expected = 0.0 if i == j else kl_divergence(
                Normal(mu[i], std[i]), Normal(mu[j], std[j])).numpy()
            np.testing.assert_allclose(kl[i, j], expected, rtol=1e-9, atol=1e-12)


def test_pairwise_mpd_std_matches_double_loop():
    mu, logvar = random_posteriors(7, 4, seed=3)
    mpd, std = pairwise_mpd_std(mu, logvar)
    ref_mpd, ref_std = brute_force_mpd_std(mu, logvar)
    assert mpd == pytest.approx(ref_mpd, rel=1e-9)
    assert std == pytest.approx(ref_std, rel=1e-9)


def test_pairwise_mpd_std_averages_consecutive_batches():
    mu, logvar = random_posteriors(13, 3, seed=5)
    # batches of 5, 5, 3 -> unweighted mean of three batch values
    refs = [brute_force_mpd_std(mu[a:b], logvar[a:b]) for a, b in ((0, 5), (5, 10), (10, 13))]
    mpd, std = pairwise_mpd_std(mu, logvar, batch=5)
    assert mpd == pytest.approx(np.mean([r[0] for r in refs]), rel=1e-9)
    assert std == pytest.approx(np.mean([r[1] for r in refs]), rel=1e-9)
    # 11 rows: the last batch of a single row has no pair and is skipped
    refs = [brute_force_mpd_std(mu[a:b], logvar[a:b]) for a, b in ((0, 5), (5, 10))]
    mpd, std = pairwise_mpd_std(mu[:11], logvar[:11], batch=5)
    assert mpd == pytest.approx(np.mean([r[0] for r in refs]), rel=1e-9)
    assert std == pytest.approx(np.mean([r[1] for r in refs]), rel=1e-9)


def test_diagnostics_errors():
    mu, logvar = random_posteriors(4, 2)
    with pytest.raises(MaevaeError, match="same shape"):
        pairwise_mpd_std(mu, logvar[:, :1])
    with pytest.raises(MaevaeError, match="batch >= 2"):
        pairwise_mpd_std(mu, logvar, batch=1)
    with pytest.raises(MaevaeError, match="2-D"):
        kl_per_dim_standard_normal(mu[0], logvar[0])
    with pytest.raises(MaevaeError, match="NaN"):
        active_units(np.array([[np.nan, 1.0]]))
    with pytest.raises(MaevaeError, match="n_samples"):
        mutual_information(mu, logvar, n_samples=0)
