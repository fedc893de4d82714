"""The binary PixelCNN decoder's output head run inside the core's forward (``head_in_core``,
so that a compiled core compiles it too) is the same function as the head after the core:
eagerly, on the traced path's channel sum (the 64 -> 1 layer), with gradients, and traced."""

import pytest
import torch

from maevae.models.decoders import PixelCNNDecoder
from maevae.nn.weightnorm import data_dependent_init

SHAPE = (1, 10, 10)


def _decoder() -> tuple[PixelCNNDecoder, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    dec = PixelCNNDecoder(SHAPE, latent_dim=6, mode="small", channels=16)
    x = (torch.rand(4, *SHAPE) < 0.5).float()
    z = torch.randn(4, 6)
    with torch.no_grad(), data_dependent_init(dec):
        dec.logits(x, z)
    with torch.no_grad():
        dec.head2.bias.fill_(0.3)  # a bias the channel sum must add
    return dec, x, z


def _logits_and_grads(dec, x, z):
    dec.zero_grad()
    out = dec.logits(x, z)
    (out * torch.linspace(0.5, 1.5, out.numel()).view_as(out)).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in dec.named_parameters()}


def test_head_in_core_is_the_head_after_the_core_eagerly():
    dec, x, z = _decoder()
    assert dec.head_in_core
    inside = _logits_and_grads(dec, x, z)
    dec.head_in_core = False
    after = _logits_and_grads(dec, x, z)
    assert torch.equal(inside[0], after[0])
    for n, g in inside[1].items():
        assert torch.equal(g, after[1][n]), n


def test_the_traced_channel_sum_is_the_64_to_1_convolution(monkeypatch):
    dec, x, z = _decoder()
    conv = _logits_and_grads(dec, x, z)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)  # the traced branch
    summed = _logits_and_grads(dec, x, z)
    torch.testing.assert_close(summed[0], conv[0], rtol=1e-5, atol=1e-5)
    for n, g in conv[1].items():
        torch.testing.assert_close(summed[1][n], g, rtol=1e-4, atol=1e-6 * float(g.abs().max()),
                                   msg=n)
    # the test can fail: the channel sum without its bias is off by exactly the bias
    dec.head2.bias.data.zero_()
    assert torch.allclose(dec.logits(x, z).detach(), conv[0] - 0.3, atol=1e-5)


@pytest.mark.parametrize("bf16", [False, True])
def test_traced_decoder_with_the_head_inside_equals_eager(bf16):
    dec, x, z = _decoder()
    dec.eval()
    torch._dynamo.reset()
    traced = torch.compile(dec.logits, backend="eager")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        want, got = dec.logits(x, z), traced(x, z)
    torch._dynamo.reset()
    assert got.dtype == want.dtype == torch.float32  # the head runs in fp32
    tol = 2e-2 if bf16 else 1e-5
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)
