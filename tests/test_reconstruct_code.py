"""VAE.reconstruct(code=...): which latent vector is decoded, checked against a hand computation.

``mu`` (the default) decodes the posterior mean; ``mean50`` (the authors' ``MAE.reconstruct``,
k = 50) decodes the mean of 50 reparameterised posterior samples mu + sigma * eps_s, with eps
drawn from the caller's generator; ``sample`` decodes one such sample.
"""

import math

import numpy as np
import pytest
import torch

from maevae.cli import build_parser, main
from maevae.config import load_config
from maevae.distributions import DiagGaussian
from maevae.models.build import build_model
from maevae.models.priors import StandardNormalPrior
from maevae.models.vae import LATENT_CODES, VAE, posterior_code

MU = [1.0, -2.0, 0.5]
LOGVAR = [0.0, math.log(4.0), math.log(0.25)]  # sigma = 1, 2, 0.5


class _FixedEncoder(torch.nn.Module):
    """q(z|x) = N(MU, exp(LOGVAR)) for every image."""

    def __init__(self):
        super().__init__()
        self.mu, self.logvar = torch.tensor(MU), torch.tensor(LOGVAR)

    def forward(self, x):
        b = x.shape[0]
        return DiagGaussian(self.mu.expand(b, -1), self.logvar.expand(b, -1))


class _RecordingDecoder(torch.nn.Module):
    """Remembers the z it is asked to decode and whether decoding was greedy."""

    def sample(self, z, greedy=False, generator=None, on_row=None):
        self.z, self.greedy = z.clone(), greedy
        return torch.zeros(z.shape[0], 1, 2, 2)


def _stub_vae() -> VAE:
    return VAE(_FixedEncoder(), _RecordingDecoder(), StandardNormalPrior(3), (1, 2, 2))


def _hand_z(code: str, b: int, seed: int) -> torch.Tensor:
    """mu + sigma * eps averaged over the draws, eps ~ randn((S, B, D)) from ``seed``."""
    s = {"mean50": 50, "sample": 1}[code]
    eps = torch.randn((s, b, 3), generator=torch.Generator().manual_seed(seed))
    mu, sigma = torch.tensor(MU), torch.tensor(LOGVAR).mul(0.5).exp()
    return sum(mu + sigma * eps[i] for i in range(s)) / s


def test_mu_decodes_the_posterior_mean_and_draws_no_noise():
    vae, x = _stub_vae(), torch.zeros(4, 1, 2, 2)
    g = torch.Generator().manual_seed(3)
    before = g.get_state()
    vae.reconstruct(x, "mu", g)
    assert torch.equal(vae.decoder.z, torch.tensor([MU] * 4)) and vae.decoder.greedy
    assert torch.equal(g.get_state(), before)
    vae.reconstruct(x)  # the default is mu
    assert torch.equal(vae.decoder.z, torch.tensor([MU] * 4))


@pytest.mark.parametrize("code", ["mean50", "sample"])
def test_mean50_and_sample_decode_the_hand_computed_code(code):
    vae, x = _stub_vae(), torch.zeros(4, 1, 2, 2)
    vae.reconstruct(x, code, torch.Generator().manual_seed(11))
    want = _hand_z(code, 4, 11)
    torch.testing.assert_close(vae.decoder.z, want, rtol=0, atol=1e-6)
    assert vae.decoder.greedy
    assert not torch.allclose(want, torch.tensor([MU] * 4))  # the noise is really there
    vae.reconstruct(x, code, torch.Generator().manual_seed(12))  # the generator is used
    assert not torch.allclose(vae.decoder.z, want)


def test_mean50_noise_shrinks_by_sqrt_50():
    q = DiagGaussian(torch.tensor([MU] * 4000), torch.tensor([LOGVAR] * 4000))
    z = posterior_code(q, "mean50", torch.Generator().manual_seed(0)).numpy()
    sigma = np.exp(0.5 * np.array(LOGVAR))
    np.testing.assert_allclose(z.std(0), sigma / math.sqrt(50), rtol=0.05)
    with pytest.raises(ValueError, match="choose one of mu, mean50, sample"):
        posterior_code(q, "median")


def test_real_model_mean50_is_greedy_decoding_of_the_mean_of_50_samples():
    torch.manual_seed(0)
    vae = build_model(load_config("tiny/test").model, (1, 8, 8)).eval()
    x = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    r = vae.reconstruct(x, "mean50", torch.Generator().manual_seed(5))
    q = vae.encoder(x)
    eps = torch.randn((50, *q.mu.shape), generator=torch.Generator().manual_seed(5))
    z = (q.mu + (0.5 * q.logvar).exp() * eps).mean(0)
    with torch.no_grad():
        assert torch.equal(r, vae.decoder.sample(z, greedy=True))
        assert torch.equal(vae.reconstruct(x), vae.decoder.sample(q.mu, greedy=True))


def test_cli_code_option(tmp_path, monkeypatch):
    actions = {a.dest: a for a in build_parser()._subparsers._group_actions[0]
               .choices["reconstruct"]._actions}
    assert tuple(actions["code"].choices) == LATENT_CODES and actions["code"].default == "mu"
    import maevae.evaluate.generate as generate

    seen = {}

    def fake(run_dir, data_root, device, n, code="mu", seed=0, progress=False):
        seen.update(code=code, seed=seed, n=n)
        return torch.zeros(n, 1, 4, 4), torch.ones(n, 1, 4, 4)

    monkeypatch.setattr(generate, "reconstruct_images", fake)
    out = tmp_path / "r.png"
    main(["reconstruct", str(tmp_path), "-n", "2", "--code", "mean50", "--seed", "7",
          "--out", str(out), "--device", "cpu"])
    assert seen == {"code": "mean50", "seed": 7, "n": 2} and out.stat().st_size > 0
    import maevae.evaluate.figures as figures

    titles = []
    monkeypatch.setattr(figures, "save_reconstruction_grid",
                        lambda x, r, path, title: titles.append(title))
    main(["reconstruct", str(tmp_path), "-n", "2", "--code", "mean50", "--seed", "7",
          "--out", str(out), "--device", "cpu"])
    main(["reconstruct", str(tmp_path), "-n", "2", "--out", str(out), "--device", "cpu"])
    assert titles == [f"{tmp_path.name}: test images and their greedy reconstructions from the "
                      "mean of 50 posterior samples, seed 7",
                      f"{tmp_path.name}: test images and their greedy reconstructions from the "
                      "posterior mean mu(x)"]
