"""CIFAR networks by gradients and Jacobians: PixelCNN++ causality, MADE2d masks, AF2d flow."""

import pytest
import torch

from maevae.models.decoders import PixelCNNppDecoder
from maevae.models.encoders import DenseNetEncoder
from maevae.models.priors import AF2dLayer, Made2dAFPrior
from maevae.nn.made2d import MADE2d
from maevae.nn.pixelcnnpp import PixelCNNpp
from maevae.nn.weightnorm import data_dependent_init


def _small_decoder(h=8, w=8, zc=2, nmix=2, **kw):
    dec = PixelCNNppDecoder((3, h, w), z_channels=zc, h_channels=2, channels=8, levels=3,
                            num_resnets=1, nmix=nmix, dropout=0.0, **kw)
    x = torch.rand(4, 3, h, w) * 2 - 1
    z = torch.randn(4, zc * (h // 4) * (w // 4))
    with data_dependent_init(dec):
        dec.params(x, z)
    return dec


def test_pixelcnnpp_output_at_a_pixel_sees_only_earlier_pixels_and_z():
    torch.manual_seed(3)
    h, w = 8, 8
    dec = _small_decoder(h, w).double()
    x = (torch.rand(1, 3, h, w, dtype=torch.float64) * 2 - 1).requires_grad_()
    z = torch.randn(1, 8, dtype=torch.float64, requires_grad=True)
    params = dec.params(x, z)  # [1, 20, H, W]
    proj = torch.randn(params.shape[1], dtype=torch.float64)  # avoid accidental cancellation
    jx = torch.zeros(h * w, h * w, dtype=torch.float64)  # [out pixel, in pixel]
    jz = torch.zeros(h * w, z.shape[1], dtype=torch.float64)
    for i in range(h * w):
        gx, gz = torch.autograd.grad(params[0, :, i // w, i % w] @ proj, (x, z),
                                     retain_graph=True)
        jx[i] = gx[0].abs().sum(0).flatten()  # all channels of each input pixel pooled
        jz[i] = gz[0].abs()
    assert torch.all(torch.triu(jx) == 0), "an output sees its own pixel or a later one"
    earlier = torch.tril(torch.ones(h * w, h * w), -1).bool()
    assert (jx[earlier] != 0).all(), "some earlier pixel is outside the receptive field"
    assert (jz.sum(1) > 0).all(), "some pixel ignores z"
    assert (jz.sum(0) > 0).all(), "some z coordinate is ignored"


def test_pixelcnnpp_receptive_field_at_the_centre_of_32x32_is_the_full_causal_context():
    torch.manual_seed(0)
    net = PixelCNNpp(3, channels=4, levels=3, num_resnets=1)
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    (g,) = torch.autograd.grad(net(x)[0, :, 16, 16].sum(), x)
    seen = g[0].abs().sum(0).flatten() != 0  # [1024]
    assert seen[:16 * 32 + 16].all() and not seen[16 * 32 + 16:].any()


def test_pixelcnnpp_stack_and_parameter_layout():
    net = PixelCNNpp(3, channels=8, levels=3, num_resnets=6, h_channels=2, dropout=0.5)
    assert len(net.up_layers) == 20 and len(net.down_layers) == 20  # 20 stack entries
    assert len(net.nin_u) == len(net.nin_ul) == 19
    nin_params = 2 * 8 * 8 + 2 * 8  # WN 1x1 2C -> C: v, bias, gain
    assert all(not p.requires_grad for p in net.unused_nin.parameters())
    assert sum(p.numel() for p in net.unused_nin.parameters()) == 2 * nin_params
    lean = PixelCNNpp(3, 8, 3, 6, 2, unused_first_nin=False)
    diff = sum(p.numel() for p in net.parameters()) - sum(p.numel() for p in lean.parameters())
    assert diff == 2 * nin_params
    blocks = [m for m in [*net.up_layers, *net.down_layers] if hasattr(m, "u_gate")]
    assert len(blocks) == 36
    assert {m.u_gate.init_scale for m in blocks} == {m.ul_gate.init_scale for m in blocks} == {0.1}
    assert {m.h_conv2.init_scale for m in blocks} == {0.1}
    assert {m.h_conv1.init_scale for m in blocks} == {m.u_conv1.init_scale for m in blocks} == {1.0}
    assert [m.h_conv1.in_ch for m in blocks] == [4] * 6 + [8] * 6 + [16] * 12 + [8] * 6 + [4] * 6


@pytest.mark.parametrize("order", ["A", "B"])
def test_made2d_is_block_triangular_over_positions_in_raster_order(order):
    c, h, w = 2, 3, 3
    made = MADE2d(c, 8, order).double()
    with torch.no_grad():
        for p in made.parameters():
            p.add_(0.1 * torch.randn_like(p))
    z = torch.randn(1, c, h, w, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(made, z)  # [1, C, H, W, 1, C, H, W]
    jac = jac.reshape(c, h * w, c, h * w).abs().sum((0, 2))  # [out position, in position]
    n = h * w
    allowed = torch.tril(torch.ones(n, n), -1) if order == "A" else torch.triu(torch.ones(n, n), 1)
    assert torch.all(jac[allowed == 0] == 0), "an output sees its own or a later position"
    # ... and it does see its neighbour in the same row (left for A, right for B)
    for p in range(n):
        q = p - 1 if order == "A" else p + 1
        if 0 <= q < n and q // w == p // w:
            assert jac[p, q] > 0


def _trained_like_prior(z_shape=(2, 3, 3), blocks=2, hidden=8):
    prior = Made2dAFPrior(z_shape, blocks, hidden, init_scale=0.1)
    d = z_shape[0] * z_shape[1] * z_shape[2]
    with data_dependent_init(prior):
        prior.log_prob(torch.randn(64, d))
    with torch.no_grad():  # move away from the near-identity init
        for p in prior.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return prior.double()


def test_af2d_prior_inverts_and_its_logdet_is_the_jacobian_slogdet():
    torch.manual_seed(1)
    prior = _trained_like_prior()
    d = prior.latent_dim
    assert d == 18
    z = torch.randn(5, d, dtype=torch.float64)
    eps, logdet = prior.to_base(z)
    assert (prior.from_base(eps) - z).abs().max() < 1e-5
    e2 = torch.randn(3, d, dtype=torch.float64)
    assert (prior.to_base(prior.from_base(e2))[0] - e2).abs().max() < 1e-5
    for i in range(2):
        jac = torch.autograd.functional.jacobian(lambda v: prior.to_base(v)[0], z[i])
        sign, ld = torch.linalg.slogdet(jac)
        assert sign > 0 and ld.item() == pytest.approx(logdet[i].item(), abs=1e-8)
    # log p(z) keeps leading axes: [S, B, D] -> [S, B]
    assert prior.log_prob(torch.randn(2, 3, d, dtype=torch.float64)).shape == (2, 3)
    s = prior.sample(4, generator=torch.Generator().manual_seed(0))
    assert s.shape == (4, d) and torch.isfinite(s).all()


def test_af2d_layer_matches_the_vector_af_formula():
    layer = AF2dLayer(2, 8, "A", init_scale=1.0).double()
    z = torch.randn(3, 2, 2, 2, dtype=torch.float64)
    eps, ld = layer(z)
    s = layer.logvar(z)
    assert torch.allclose(eps, layer.shift(z) + z * (0.5 * s).exp())
    assert torch.allclose(ld, 0.5 * s.flatten(1).sum(1))


def test_densenet_encoder_shapes_and_logvar_clip():
    enc = DenseNetEncoder((3, 8, 8), z_channels=2, logvar_clip=7.0, growth=(2, 2, 2),
                          steps=(1, 1, 2), hidden=8)
    assert enc.latent_dim == 8 and enc.z_shape == (2, 2, 2)
    with torch.no_grad():
        enc.out.bias[2:] = 100.0  # the log-variance half
        enc.out.bias[:2] = -100.0
    q = enc(torch.rand(3, 3, 8, 8) * 2 - 1)
    assert q.mu.shape == q.logvar.shape == (3, 8)
    assert torch.all(q.logvar == 7.0) and torch.all(q.mu < -7)
