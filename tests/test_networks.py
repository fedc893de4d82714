"""Autoregressive structure by gradients, flows against autograd Jacobians, parameter counts."""

import pytest
import torch

from maevae.config import ModelConfig, RunConfig
from maevae.models.build import build_model, count_parameters
from maevae.models.decoders import PixelCNNDecoder
from maevae.models.priors import AFLayer, AFPrior
from maevae.nn.made import MADE
from maevae.nn.masked import conv_mask
from maevae.nn.weightnorm import Conv2dWN, data_dependent_init


def test_parameter_counts_match_the_authors_models():
    counts = count_parameters(build_model(ModelConfig(), (1, 28, 28)))
    assert counts == {"encoder": 703_872, "prior": 356_352, "decoder": 505_346,
                      "total": 1_565_570}
    cfg = ModelConfig()
    cfg.decoder.mode = "large"
    assert count_parameters(build_model(cfg, (1, 28, 28)))["decoder"] == 897_538
    cfg.decoder.type = "resnet"
    assert count_parameters(build_model(cfg, (1, 28, 28)))["decoder"] == 141_327


def test_conv_masks():
    a = conv_mask(1, 1, 3, "A")[0, 0]
    b = conv_mask(1, 1, 3, "B")[0, 0]
    assert a.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert b.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    part = conv_mask(2, 5, 3, "A", masked_channels=1)
    assert part[:, 1:].eq(1).all() and part[:, 0].eq(a).all()


@pytest.mark.parametrize("mode", ["small", "paper_literal_6"])
def test_pixelcnn_depends_on_no_current_or_future_pixel_and_on_every_z(mode):
    h, w, d = 7, 6, 5
    dec = PixelCNNDecoder((1, h, w), latent_dim=d, mode=mode, channels=8)
    x = (torch.rand(1, 1, h, w) < 0.5).float()
    z = torch.randn(1, d)
    with data_dependent_init(dec):
        dec.logits(torch.cat([x, 1 - x]), torch.cat([z, -z]))
    jx, jz = torch.autograd.functional.jacobian(
        lambda xx, zz: dec.logits(xx, zz).flatten(), (x, z), vectorize=True)
    jx = jx.reshape(h * w, h * w)  # [output pixel, input pixel]
    jz = jz.reshape(h * w, d)
    assert torch.all(torch.triu(jx) == 0), "an output sees its own or a later pixel"
    strictly_lower = torch.tril(torch.ones(h * w, h * w), -1).bool()
    assert (jx[strictly_lower] != 0).float().mean() > 0.5  # and it does see earlier pixels
    assert torch.all(jz != 0), "some output ignores some z"


def test_pixelcnn_receptive_field_on_28x28_small():
    dec = PixelCNNDecoder((1, 28, 28), latent_dim=4, mode="small", channels=8)
    x = torch.rand(1, 1, 28, 28, requires_grad=True)
    out = dec.logits(x, torch.randn(1, 4))
    (g,) = torch.autograd.grad(out[0, 0, 20, 14], x)
    rows = g[0, 0].abs().sum(1).nonzero().flatten()
    assert rows.min().item() == 20 - 15 and rows.max().item() == 20
    assert torch.all(g[0, 0, 20, 14:] == 0) and g[0, 0, 20, :14].abs().sum() > 0


@pytest.mark.parametrize("order", ["A", "B"])
def test_made_jacobian_is_strictly_triangular(order):
    made = MADE(32, 320, order)
    x = torch.randn(32)
    jac = torch.autograd.functional.jacobian(made, x)  # [out, in]
    tri = torch.tril(torch.ones(32, 32), -1) if order == "A" else torch.triu(torch.ones(32, 32), 1)
    assert torch.all(jac[tri == 0] == 0)
    assert int((jac != 0).sum()) == 32 * 31 // 2


def _trained_like_prior(d=6, blocks=2, hidden=24):
    prior = AFPrior(d, blocks, hidden, init_scale=0.1)
    with data_dependent_init(prior):
        prior.log_prob(torch.randn(64, d))
    with torch.no_grad():  # move away from the near-identity init
        for p in prior.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return prior.double()


def test_flow_inverse_and_log_determinant():
    prior = _trained_like_prior()
    z = torch.randn(5, 6, dtype=torch.float64)
    eps, logdet = prior.to_base(z)
    torch.testing.assert_close(prior.from_base(eps), z, atol=1e-5, rtol=0)
    for n in range(5):
        jac = torch.autograd.functional.jacobian(lambda v: prior.to_base(v)[0], z[n])
        torch.testing.assert_close(logdet[n], torch.linalg.slogdet(jac).logabsdet)


def test_single_af_layer_inverts_in_both_orders():
    for order in ("A", "B"):
        layer = AFLayer(5, 20, order, 1.0).double()
        z = torch.randn(3, 5, dtype=torch.float64)
        eps, _ = layer(z)
        torch.testing.assert_close(layer.inverse(eps), z, atol=1e-8, rtol=0)


def test_prior_log_prob_normalises_in_2d():
    prior = _trained_like_prior(d=2, blocks=1, hidden=8)
    g = torch.linspace(-10, 10, 801, dtype=torch.float64)
    zz = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    mass = prior.log_prob(zz).exp().sum() * (g[1] - g[0]) ** 2
    assert mass.item() == pytest.approx(1.0, abs=2e-3)


def test_data_dependent_init_normalises_pre_activations():
    layer = Conv2dWN(3, 8, 3, padding=1, init_scale=0.5)
    x = torch.randn(32, 3, 10, 10) * 4 + 2
    with data_dependent_init(layer):
        layer(x)
    out = layer(x).transpose(0, 1).reshape(8, -1)
    torch.testing.assert_close(out.mean(1), torch.zeros(8), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(1), torch.full((8,), 0.5), atol=1e-4, rtol=0)


def test_vae_initialize_and_terms_shapes():
    cfg = RunConfig()
    model = build_model(cfg.model, (1, 8, 8))
    x = (torch.rand(16, 1, 8, 8) < 0.4).float()
    model.initialize(x)
    t = model.terms(x, n_samples=3)
    assert t.recon.shape == (16,) and t.kl.shape == (16,) and t.mu.shape == (16, 32)
    assert torch.isfinite(t.recon).all() and (t.recon > 0).all()


def test_fast_sampling_equals_full_recompute():
    torch.manual_seed(1)
    dec = PixelCNNDecoder((1, 19, 4), latent_dim=3, mode="small", channels=8)
    z = torch.randn(3, 3)
    fast = dec.sample(z, greedy=True)
    x = torch.zeros(3, 1, 19, 4)
    with torch.no_grad():
        for r in range(19):
            for c in range(4):
                x[:, :, r, c] = (torch.sigmoid(dec.logits(x, z)[:, :, r, c]) >= 0.5).float()
    torch.testing.assert_close(fast, x)
