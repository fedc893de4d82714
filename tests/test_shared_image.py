"""The decoder's first layer on the image once per image (``share_image``) equals the
repeated-input path: values, gradients and data-dependent init, masked and causal convs."""

import copy

import pytest
import torch

from maevae.models.decoders import PixelCNNDecoder
from maevae.nn import causal
from maevae.nn.weightnorm import data_dependent_init, folded

SHAPE = (1, 12, 12)


def _decoder(seed: int = 0) -> tuple[PixelCNNDecoder, torch.Tensor]:
    torch.manual_seed(seed)
    dec = PixelCNNDecoder(SHAPE, latent_dim=8, mode="small", channels=16)
    x = (torch.rand(5, *SHAPE) < 0.5).float()
    with causal.use_impl("masked"):
        dec.share_image = False
        with torch.no_grad(), data_dependent_init(dec):
            dec.log_prob(x, torch.randn(1, 5, 8))
    dec.share_image = "auto"
    return dec, x


def _both(dec, x, z):
    dec.share_image = True
    a = dec.log_prob(x, z)
    dec.share_image = False
    b = dec.log_prob(x, z)
    dec.share_image = "auto"
    return a, b


@pytest.mark.parametrize("impl", ["masked", "causal"])
@pytest.mark.parametrize("s", [1, 4])
@pytest.mark.parametrize("train", [True, False])
def test_shared_image_equals_repeated_image(impl, s, train):
    dec, x = _decoder()
    dec.train(train)
    z = torch.randn(s, x.shape[0], 8)
    with causal.use_impl(impl), torch.no_grad():
        a, b = _both(dec, x, z)
    assert a.shape == (s, x.shape[0])
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))
    # the test can fail: a wrong sample order (image-major) changes the values
    if s > 1:
        with causal.use_impl(impl), torch.no_grad():
            wrong = dec.log_prob(x, z.transpose(0, 1).reshape(s, x.shape[0], 8))
        assert not torch.allclose(wrong, a, atol=1e-3)


@pytest.mark.parametrize("impl", ["masked", "causal"])
def test_shared_image_equals_repeated_image_with_folded_weights(impl):
    dec, x = _decoder(1)
    z = torch.randn(3, x.shape[0], 8)
    with causal.use_impl(impl), torch.no_grad():
        ref = _both(dec, x, z)[1]
        with folded(dec):
            a, b = _both(dec, x, z)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))
    torch.testing.assert_close(a, ref, rtol=1e-5, atol=1e-5 * float(b.abs().max()))


@pytest.mark.parametrize("impl", ["masked", "causal"])
@pytest.mark.parametrize("s", [1, 3])
def test_shared_image_gradients_equal(impl, s):
    dec, x = _decoder(2)
    dec.train()
    z = torch.randn(s, x.shape[0], 8, requires_grad=True)
    grads = []
    for share in (True, False):
        dec.share_image = share
        dec.zero_grad(set_to_none=True)
        z.grad = None
        with causal.use_impl(impl):
            dec.log_prob(x, z).sum().backward()
        grads.append({"z": z.grad.clone(),
                      **{n: p.grad.clone() for n, p in dec.named_parameters()}})
    dec.share_image = "auto"
    a, b = grads
    assert a.keys() == b.keys()
    for name in a:
        scale = float(b[name].abs().max()) or 1.0
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5 * scale, msg=name)


def test_data_dependent_init_through_the_shared_path_matches():
    torch.manual_seed(3)
    dec = PixelCNNDecoder(SHAPE, latent_dim=8, mode="small", channels=16)
    other = copy.deepcopy(dec)
    x = (torch.rand(6, *SHAPE) < 0.5).float()
    z = torch.randn(1, 6, 8)
    for d, share in ((dec, True), (other, False)):
        d.share_image = share
        with torch.no_grad(), data_dependent_init(d):
            d.log_prob(x, z)
    for (n, p), q in zip(dec.named_parameters(), other.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-5, msg=n)


def test_forward_shared_needs_unmasked_channels():
    dec, x = _decoder()
    layer = dec.core.blocks[0].masked  # every input channel masked
    with pytest.raises(ValueError, match="unmasked"):
        layer.forward_shared(torch.zeros(1, 8, 12, 12), torch.zeros(2, 0, 12, 12))
    with pytest.raises(ValueError, match="multiple"):
        dec.core.first.forward_shared(x[:2], torch.zeros(3, 4, 12, 12))


def test_share_image_auto_follows_compilation():
    dec, _ = _decoder()
    assert dec.share_image == "auto" and not dec.shares_image()
    dec.core.compile()  # only wraps the call: nothing compiles until the core runs
    try:
        assert dec.shares_image()
        dec.share_image = False
        assert not dec.shares_image()
    finally:
        dec.core._compiled_call_impl = None
    dec.share_image = True
    assert dec.shares_image()
