"""The CIFAR-10 VAE: parameter counts, presets, config errors, a reduced model end to end."""

import pytest
import torch

from maevae.config import ModelConfig, list_presets, load_config
from maevae.errors import ConfigError
from maevae.inference.likelihood import importance_sampled_nll
from maevae.models.build import build_color_model, build_model, count_parameters
from maevae.models.decoders import PixelCNNppDecoder
from maevae.models.encoders import DenseNetEncoder
from maevae.models.priors import Made2dAFPrior
from maevae.models.vae import VAE
from maevae.objectives import training_loss as mae_loss

CIFAR_PRESETS = ["cifar10/mae_eta0.5_gamma1.5", "cifar10/mae_eta0.5_gamma2.0",
                 "cifar10/mae_eta1.0_gamma2.0", "cifar10/vlae"]


def test_parameter_counts_match_the_authors_cifar_model():
    cfg = load_config("cifar10/vlae").model
    with torch.device("meta"):  # shapes only: the real model has 48M parameters
        model = build_model(cfg, (3, 32, 32))
    assert count_parameters(model) == {"encoder": 302_614, "prior": 5_358_592,
                                       "decoder": 42_740_960, "total": 48_402_166}
    assert model.latent_dim == 1024


def test_every_cifar_preset_loads_with_the_paper_settings():
    assert sorted(n for n in list_presets() if n.startswith("cifar10/")) == CIFAR_PRESETS
    for name in CIFAR_PRESETS:
        cfg = load_config(name)
        assert cfg.data.name == "cifar10" and cfg.data.binarize is False
        m = cfg.model
        enc = (m.encoder.type, m.encoder.latent_dim, m.encoder.logvar_clip)
        assert enc == ("densenet", 16, 7.0)
        assert (m.decoder.type, m.decoder.nmix, m.decoder.dropout) == ("pixelcnnpp", 10, 0.5)
        assert (m.prior.type, m.prior.blocks, m.prior.hidden, m.prior.init_scale) == \
            ("af", 4, 128, 0.1)
        t = cfg.train
        assert (t.batch_size, t.betas, t.ema_decay, t.lr_decay, t.patience, t.init_batch,
                t.eval_batch) == (64, [0.95, 0.9995], 0.9995, 0.999995, 50, 256, 100)
        assert cfg.eval.nll_samples == 512
    assert (load_config("cifar10/vlae").objective.eta,
            load_config("cifar10/vlae").objective.gamma) == (0.0, 0.0)
    o = load_config("cifar10/mae_eta1.0_gamma2.0").objective
    assert (o.eta, o.gamma) == (1.0, 2.0)


def _cfg(**changes):
    cfg = ModelConfig()
    cfg.encoder.type, cfg.encoder.latent_dim = "densenet", 16
    cfg.decoder.type = "pixelcnnpp"
    for key, value in changes.items():
        part, field = key.split("__")
        setattr(getattr(cfg, part), field, value)
    return cfg


@pytest.mark.parametrize("changes, shape", [
    ({"decoder__type": "pixelcnn"}, (3, 32, 32)),
    ({"decoder__type": "resnet"}, (3, 32, 32)),
    ({"encoder__type": "resnet"}, (3, 32, 32)),
    ({}, (1, 28, 28)),
    ({}, (3, 30, 30)),
])
def test_unsupported_combinations_raise_one_line_config_errors(changes, shape):
    with pytest.raises(ConfigError) as e:
        build_color_model(_cfg(**changes), shape)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError):  # the same through the generic builder
        build_model(_cfg(**changes), shape)


def _tiny_vae(prior=True):
    """3×8×8 images, latent 2×2×2 (D = 8), every width reduced."""
    enc = DenseNetEncoder((3, 8, 8), z_channels=2, logvar_clip=7.0, growth=(2, 2, 2),
                          steps=(1, 1, 2), hidden=8)
    pri = Made2dAFPrior((2, 2, 2), blocks=1, hidden=8) if prior else None
    dec = PixelCNNppDecoder((3, 8, 8), z_channels=2, h_channels=2, channels=8,
                            num_resnets=1, nmix=2, dropout=0.5)
    if pri is None:
        from maevae.models.priors import StandardNormalPrior
        pri = StandardNormalPrior(8)
    return VAE(enc, dec, pri, (3, 8, 8))


def _images(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 8, 8), generator=g).float() / 127.5 - 1  # the 8-bit grid


def test_reduced_model_initialises_computes_terms_and_trains():
    vae = _tiny_vae()
    x = _images(2)
    gate_g = vae.decoder.core.up_layers[0].u_gate.g.clone()
    vae.initialize(_images(16, seed=1))
    assert not torch.equal(gate_g, vae.decoder.core.up_layers[0].u_gate.g)  # DDI ran
    assert vae.training
    terms = vae.terms(x, n_samples=2, generator=torch.Generator().manual_seed(0))
    assert terms.recon.shape == terms.kl.shape == (2,)
    assert terms.mu.shape == terms.logvar.shape == (2, 8)
    assert torch.isfinite(terms.recon).all() and torch.isfinite(terms.kl).all()
    assert (terms.recon > 0).all()  # a discrete likelihood: -log p >= 0
    cfg = load_config("cifar10/mae_eta0.5_gamma1.5").objective
    loss = mae_loss(terms.recon, terms.kl, terms.mu, terms.logvar, cfg, data_dims=3 * 64)
    loss.loss.backward()
    for part in (vae.encoder, vae.prior, vae.decoder):
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(p.grad is None for p in vae.decoder.core.unused_nin.parameters())


def test_reduced_model_samples_reconstructs_and_gives_an_is_nll():
    vae = _tiny_vae()
    vae.initialize(_images(16, seed=1))
    vae.eval()
    gen = torch.Generator().manual_seed(0)
    s = vae.sample(2, generator=gen)
    assert s.shape == (2, 3, 8, 8) and s.min() >= -1 and s.max() <= 1
    x = _images(2)
    r1 = vae.reconstruct(x)
    # greedy decoding is a fixed point: each pixel is the mean of its argmax component
    from maevae.distributions.logistic_mixture import sample_discretized_logistic_mixture
    z = vae.encoder(x).mu
    params = vae.decoder.params(r1, z)
    assert torch.allclose(sample_discretized_logistic_mixture(params, 2, greedy=True), r1,
                          atol=1e-5)
    res = importance_sampled_nll(vae, x, k=4, chunk=8, generator=gen)
    assert torch.isfinite(res.nll).all() and (res.nll <= res.elbo + 1e-4).all()


def test_reduced_model_with_a_standard_normal_prior_uses_the_analytic_kl():
    vae = _tiny_vae(prior=False)
    vae.initialize(_images(8))
    t = vae.terms(_images(2))
    assert torch.isfinite(t.kl).all() and (t.kl >= 0).all()


def test_build_color_model_for_small_images_wires_shapes_through():
    cfg = _cfg(prior__hidden=4, prior__blocks=1)
    cfg.encoder.latent_dim = 2
    with torch.device("meta"):
        vae = build_color_model(cfg, (3, 16, 16))
    assert vae.latent_dim == 2 * 4 * 4 == vae.encoder.latent_dim
    assert vae.decoder.z_shape == vae.prior.z_shape == (2, 4, 4)
