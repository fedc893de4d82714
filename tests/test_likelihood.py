"""The importance-sampled likelihood against numerical integration on tiny models."""

import math

import pytest
import torch
from torch import nn

from maevae.distributions import DiagGaussian
from maevae.inference.likelihood import bits_per_dim, importance_sampled_nll
from maevae.models.decoders import _BinaryDecoder
from maevae.models.priors import AFPrior, StandardNormalPrior
from maevae.models.vae import VAE
from maevae.nn.weightnorm import data_dependent_init


class TinyEncoder(nn.Module):
    """q(z|x) looked up per 2×2 binary pattern (16 patterns); set by the test."""

    def __init__(self, d: int):
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(16, d))
        self.logvar = nn.Parameter(torch.zeros(16, d))

    def forward(self, x):
        code = (x.flatten(1) @ torch.tensor([1.0, 2, 4, 8], dtype=x.dtype)).long()
        return DiagGaussian(self.mu[code], self.logvar[code])


class TinyDecoder(_BinaryDecoder):
    def __init__(self, d: int):
        super().__init__()
        self.lin = nn.Linear(d, 4)

    def logits(self, x, z):
        return self.lin(z).view(-1, 1, 2, 2)


def _model(d, prior):
    torch.manual_seed(3)
    model = VAE(TinyEncoder(d), TinyDecoder(d), prior, (1, 2, 2)).double()
    with torch.no_grad():
        model.decoder.lin.weight.mul_(3.0)
        # q(z|x): the exact posterior's per-dimension moments, shifted and widened a bit
        zz, cell = _grid(d)
        for code in range(16):
            x = torch.tensor([(code >> i) & 1 for i in range(4)], dtype=torch.float64)
            logp = model.decoder.log_prob(x.view(1, 1, 2, 2), zz[:, None, :])[:, 0]
            w = torch.softmax(logp + model.prior.log_prob(zz), 0)  # posterior on the grid
            mean = (w[:, None] * zz).sum(0)
            var = (w[:, None] * (zz - mean).pow(2)).sum(0)
            model.encoder.mu[code] = mean + 0.2 * var.sqrt()
            model.encoder.logvar[code] = (1.3**2 * var).log()
    return model


def _grid(d):
    n = 2001 if d == 1 else 601
    g = torch.linspace(-9, 9, n, dtype=torch.float64)
    zz = g[:, None] if d == 1 else torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(
        -1, 2)
    return zz, math.log(g[1] - g[0]) * d


def _exact_log_px(model, x, d):
    zz, cell = _grid(d)
    out = []
    for xi in x:
        log_px = model.decoder.log_prob(xi[None], zz[:, None, :])[:, 0]  # [grid]
        out.append(torch.logsumexp(log_px + model.prior.log_prob(zz), 0) + cell)
    return torch.stack(out)


@pytest.mark.parametrize("d", [1, 2])
def test_is_estimate_matches_numerical_integration(d):
    if d == 1:
        prior = StandardNormalPrior(1)
    else:
        prior = AFPrior(2, blocks=1, hidden=8, init_scale=0.5)
        with data_dependent_init(prior):
            prior.log_prob(torch.randn(64, 2))
    model = _model(d, prior)
    x = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 1, 0]], dtype=torch.float64).view(
        3, 1, 2, 2)
    exact = _exact_log_px(model, x, d)
    res = importance_sampled_nll(model, x, k=4096, chunk=1000,
                                 generator=torch.Generator().manual_seed(0))
    assert torch.all((res.nll + exact).abs() < 0.05), (res.nll, -exact)
    assert torch.all(res.elbo >= -exact - 1e-9)  # the (negative) ELBO is a looser bound
    assert torch.all(res.elbo - res.nll > 0.01)  # and strictly so for this posterior
    assert torch.all(res.nll_mc_stderr > 0) and torch.all(res.nll_mc_stderr < 0.05)
    torch.testing.assert_close(res.elbo, res.recon + res.kl)


def test_chunking_gives_the_same_estimate():
    model = _model(1, StandardNormalPrior(1))
    x = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.float64).view(2, 1, 2, 2)
    a = importance_sampled_nll(model, x, 3000, chunk=10_000,
                               generator=torch.Generator().manual_seed(4))
    b = importance_sampled_nll(model, x, 3000, chunk=7, generator=torch.Generator().manual_seed(5))
    assert a.nll.shape == (2,)
    tol = 4 * (a.nll_mc_stderr.pow(2) + b.nll_mc_stderr.pow(2)).sqrt()
    assert torch.all((a.nll - b.nll).abs() < tol)


def test_k_equal_one_gives_the_single_sample_elbo():
    model = _model(1, StandardNormalPrior(1))
    x = torch.tensor([[0, 1, 1, 0]], dtype=torch.float64).view(1, 1, 2, 2)
    res = importance_sampled_nll(model, x, 1, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(res.nll, res.elbo)


def test_bits_per_dim():
    assert bits_per_dim(3072 * math.log(2) * 3.0, 3072) == pytest.approx(3.0)
