"""The causal convolutions compute the masked reference's function (outputs and gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from maevae.models.decoders import PixelCNNDecoder
from maevae.nn import causal
from maevae.nn.masked import MaskedConv2d, conv_mask
from maevae.nn.weightnorm import data_dependent_init

STRATEGIES = ["rows", "crop", "split", "auto"]


def _close(a, b, rtol=1e-5):
    scale = b.abs().max().clamp_min(1e-12)
    assert (a - b).abs().max() <= rtol * scale, float((a - b).abs().max() / scale)


@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize("order", ["A", "B"])
@pytest.mark.parametrize("masked_channels", [None, 1])
def test_function_matches_masked_reference(k, mask_type, order, masked_channels):
    """Outputs and input/weight/bias gradients, every strategy, odd non-square images."""
    x0 = torch.randn(2, 3, 7, 9)
    w0 = torch.randn(4, 3, k, k)
    b0 = torch.randn(4)
    mask = conv_mask(4, 3, k, mask_type, masked_channels, order)
    g = torch.randn(2, 4, 7, 9)

    def grads(fn):
        x, w, b = (t.clone().requires_grad_() for t in (x0, w0, b0))
        y = fn(x, w, b)
        (y * g).sum().backward()
        return y.detach(), x.grad, w.grad, b.grad

    ref = grads(lambda x, w, b: F.conv2d(x, w * mask, b, 1, k // 2))
    for strategy in STRATEGIES:
        for first in ("full", "split"):
            out = grads(lambda x, w, b, s=strategy, f=first: causal.causal_conv2d(
                x, w, b, mask_type, masked_channels, order, s, f))
            for a, r in zip(out, ref):
                _close(a, r)


@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("mask_type,masked_channels", [("A", None), ("A", 1), ("B", None)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_masked_conv2d_module_same_output_and_parameter_grads(k, mask_type, masked_channels,
                                                              channels_last):
    torch.manual_seed(k)
    layer = MaskedConv2d(5, 6, k, mask_type, masked_channels=masked_channels)
    x0 = torch.randn(3, 5, 9, 11)
    with causal.use_impl("masked"), data_dependent_init(layer):
        layer(x0)  # DDI: non-trivial gain and bias
    g = torch.randn(3, 6, 9, 11)

    def run(impl, strategy="auto"):
        layer.zero_grad(set_to_none=True)
        x = x0.clone().requires_grad_()
        with causal.use_config(impl=impl, strategy=strategy, channels_last=channels_last):
            y = layer(x)
        (y * g).sum().backward()
        return [y.detach(), x.grad, layer.v.grad, layer.g.grad, layer.bias.grad]

    ref = run("masked")
    for strategy in STRATEGIES:
        for a, r in zip(run("causal", strategy), ref):
            _close(a, r)
    assert (run("causal")[2] * (1 - layer.mask)).abs().max() == 0  # masked taps get no grad


def test_order_b_flow_layer_and_eval_mode():
    layer = MaskedConv2d(4, 4, 3, "B", order="B")
    x = torch.randn(2, 4, 5, 7)
    with torch.no_grad():
        with causal.use_impl("masked"):
            ref = layer(x)
        with causal.use_impl("causal"):  # no grad: the "crop" strategy
            out = layer(x)
    _close(out, ref)


def test_pixelcnn_decoder_log_prob_agrees_between_impls():
    torch.manual_seed(0)
    dec = PixelCNNDecoder((1, 11, 13), latent_dim=6, mode="small", channels=16)
    x = (torch.rand(4, 1, 11, 13) < 0.5).float()
    z = torch.randn(2, 4, 6)
    with causal.use_impl("masked"), data_dependent_init(dec), torch.no_grad():
        dec.log_prob(x, z[:1])

    def run(impl, channels_last):
        dec.zero_grad(set_to_none=True)
        with causal.use_config(impl=impl, channels_last=channels_last):
            lp = dec.log_prob(x, z)
        lp.sum().backward()
        return lp.detach(), [p.grad.clone() for p in dec.parameters()]

    lp_ref, g_ref = run("masked", False)
    for channels_last in (False, True):
        lp, gr = run("causal", channels_last)
        _close(lp, lp_ref)
        for a, r in zip(gr, g_ref):
            _close(a, r)
    with torch.no_grad(), causal.use_impl("causal"):
        _close(dec.log_prob(x, z), lp_ref)


def test_decoder_stays_causal():
    """Changing pixel (r, c) never changes the logits at or before it in raster order."""
    torch.manual_seed(1)
    dec = PixelCNNDecoder((1, 9, 9), latent_dim=4, mode="small", channels=8)
    x = (torch.rand(1, 1, 9, 9) < 0.5).float()
    z = torch.randn(1, 4)
    with torch.no_grad(), causal.use_impl("causal"):
        base = dec.logits(x, z)
        x2 = x.clone()
        x2[0, 0, 4, 4] = 1 - x2[0, 0, 4, 4]
        diff = (dec.logits(x2, z) - base).abs()[0, 0].flatten()
    assert diff[:4 * 9 + 5].max() == 0  # up to and including (4, 4)
    assert diff[4 * 9 + 5:].max() > 0


def test_switch_validation_and_restore():
    before = causal.get_config()
    with causal.use_impl("masked"):
        assert causal.get_impl() == "masked"
    assert causal.get_config() == before
    with pytest.raises(ValueError):
        causal.set_impl("fast")
    with pytest.raises(ValueError):
        causal.configure(strategy="diagonal")
    assert causal.get_config() == before
    with pytest.raises(ValueError):
        causal.causal_conv2d(torch.randn(1, 1, 4, 4), torch.randn(1, 1, 4, 4), None, "A")
    assert causal.useful_taps(7, "B") == 25 and causal.useful_taps(3, "A") == 4


@pytest.mark.parametrize("capability", ["AVX2", "AVX512"])
def test_no_grad_strategy_by_cpu_capability(monkeypatch, capability):
    """Without gradients 7×7 kernels use ``rows`` on AVX2-only CPUs and ``crop`` elsewhere
    (BENCHMARKS.md, 2026-12-03); smaller kernels use ``crop``; the result is the reference's."""
    monkeypatch.setattr(causal, "_CPU_CAPABILITY", capability)
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 9)
    w7, w5 = torch.randn(4, 4, 7, 7), torch.randn(4, 4, 5, 5)
    with torch.no_grad():
        assert causal.choose_strategy(x, w7) == ("rows" if capability == "AVX2" else "crop")
        assert causal.choose_strategy(x, w5) == "crop"
        w = w7 * conv_mask(4, 4, 7, "B")
        _close(causal.causal_conv2d(x, w, None, "B", strategy="auto", premasked=True),
               F.conv2d(x, w, None, 1, 3))
    x.requires_grad_(True)
    assert causal.choose_strategy(x, w7) == "rows"  # training: rows for k >= 5 everywhere


@pytest.mark.parametrize("amx", [True, False])
def test_no_grad_strategy_rows_when_compiled_in_bf16_with_amx(monkeypatch, amx):
    """Traced by ``torch.compile`` in bf16 on a CPU with AMX, every no-grad masked conv uses
    ``rows`` (BENCHMARKS.md, 2026-12-03 17:00); eager, fp32 or without AMX keeps ``crop``; the
    traced result equals the masked reference at bf16 rounding."""
    monkeypatch.setattr(causal, "_CPU_CAPABILITY", "AVX512")
    monkeypatch.setattr(causal, "_AMX", amx)
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 9)
    w = torch.randn(4, 4, 5, 5) * conv_mask(4, 4, 5, "B")

    def strategy_code(x, w):  # 1 for rows, 2 for crop, as a tensor a traced graph returns
        return x.new_full((), 1.0 if causal.no_grad_strategy(x, w) == "rows" else 2.0)

    torch._dynamo.reset()
    traced = torch.compile(strategy_code, backend="eager", fullgraph=True)
    with torch.no_grad():
        assert float(traced(x, w)) == 2.0  # fp32
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert causal.no_grad_strategy(x, w) == "crop"  # eager
            assert float(traced(x, w)) == (1.0 if amx else 2.0)
            conv = torch.compile(lambda x, w: causal.causal_conv2d(x, w, None, "B",
                                                                   premasked=True),
                                 backend="eager", fullgraph=True)
            got = conv(x, w).float()
            want = F.conv2d(x.bfloat16(), w.bfloat16(), None, 1, 2).float()
    torch._dynamo.reset()
    assert torch.allclose(got, want, rtol=2e-2, atol=5e-2)
