"""One MPD/STD implementation and one small-batch rule for training, validation and diagnostics."""

import statistics

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from maevae.evaluate.diagnostics import pairwise_mpd_std
from maevae.objectives import MIN_DIVERGENCE_BATCH, MIN_MPD_BATCH, MIN_STD_BATCH, batch_mpd_std


def _brute(mu, logvar):
    """Double loop over ordered pairs i != j with torch.distributions (float64)."""
    b = mu.shape[0]
    sd = (0.5 * logvar).exp()
    totals = [float(kl_divergence(Normal(mu[i], sd[i]), Normal(mu[j], sd[j])).sum())
              for i in range(b) for j in range(b) if i != j]
    return sum(totals) / len(totals), statistics.stdev(totals)


def test_two_posteriors_have_mpd_but_no_std():
    g = torch.Generator().manual_seed(3)
    mu = torch.randn(2, 3, generator=g, dtype=torch.float64)
    logvar = 0.3 * torch.randn(2, 3, generator=g, dtype=torch.float64)
    assert MIN_DIVERGENCE_BATCH == MIN_MPD_BATCH == 2 and MIN_STD_BATCH == 3
    assert batch_mpd_std(mu[:1], logvar[:1]) is None
    mpd, std = batch_mpd_std(mu, logvar)
    ref_mpd, _ = _brute(mu, logvar)
    assert mpd == pytest.approx(ref_mpd, rel=1e-9) and std is None


def test_diagnostics_use_the_same_rule_for_a_last_batch_of_two():
    g = torch.Generator().manual_seed(4)
    mu = torch.randn(5, 3, generator=g, dtype=torch.float64)
    logvar = 0.3 * torch.randn(5, 3, generator=g, dtype=torch.float64)
    # batches of 3: rows 0-2 and 3-4 (two rows: in MPD, not in STD)
    refs = [_brute(mu[:3], logvar[:3]), _brute(mu[3:], logvar[3:])]
    mpd, std = pairwise_mpd_std(mu.numpy(), logvar.numpy(), batch=3)
    assert mpd == pytest.approx((refs[0][0] + refs[1][0]) / 2, rel=1e-9)
    assert std == pytest.approx(refs[0][1], rel=1e-9)
    mpd, std = pairwise_mpd_std(mu.numpy(), logvar.numpy(), batch=2)  # no batch of 3
    assert mpd is not None and std is None
