"""The precision switch and the evaluation helpers (fold, autocast, allocator)."""

from __future__ import annotations

import pytest
import torch

from maevae import device as prec
from maevae.config import RunConfig
from maevae.models.build import build_model
from maevae.models.decoders import PixelCNNDecoder
from maevae.nn import causal
from maevae.nn import weightnorm as wn
from maevae.nn.weightnorm import data_dependent_init

# bf16 autocast vs fp32 log p(x|z) of a DDI-initialised decoder: |diff| per image at most
# 0.5% of |log p| (measured: 0.12-0.14% on 3 seeds; bf16 has an 8-bit mantissa, ~0.4% per rounding,
# and the per-pixel errors partly cancel in the sum over pixels).
BF16_REL_TOL = 5e-3


def _decoder(shape=(1, 12, 12), channels=16, seed=0):
    torch.manual_seed(seed)
    dec = PixelCNNDecoder(shape, latent_dim=6, mode="small", channels=channels)
    x = (torch.rand(8, *shape) < 0.5).float()
    z = torch.randn(3, 8, 6)
    with data_dependent_init(dec), torch.no_grad():
        dec.log_prob(x, z[:1])
    return dec, x, z


@pytest.mark.parametrize("impl", ["masked", "causal"])
def test_fold_gives_identical_outputs(impl):
    dec, x, z = _decoder()
    with torch.no_grad(), causal.use_impl(impl):
        dec.eval()
        ref = dec.log_prob(x, z)
        with wn.folded(dec):
            assert wn.is_folded(dec)
            out = dec.log_prob(x, z)
    assert torch.equal(out, ref)
    assert not wn.is_folded(dec)


def test_fold_for_eval_on_a_vae_and_unfold():
    torch.manual_seed(0)
    model = build_model(RunConfig().model, (1, 28, 28))
    x = (torch.rand(4, 1, 28, 28) < 0.5).float()
    model.initialize(x)
    model.eval()
    with torch.no_grad():
        q = model.encoder(x)
        z = q.mu.unsqueeze(0)
        ref = (model.decoder.log_prob(x, z), model.prior.log_prob(z[0]), q.mu)
        wn.fold_for_eval(model)
        assert wn.is_folded(model) and not model.training
        q2 = model.encoder(x)
        out = (model.decoder.log_prob(x, z), model.prior.log_prob(z[0]), q2.mu)
    for a, b in zip(out, ref):
        assert torch.equal(a, b)
    wn.unfold(model)
    assert not wn.is_folded(model)


def test_folded_context_restores_training_mode():
    dec, x, z = _decoder()
    dec.train()
    with wn.folded(dec):
        assert not dec.training
    assert dec.training and not wn.is_folded(dec)


@pytest.mark.parametrize("impl", ["masked", "causal"])
def test_bf16_autocast_log_prob_close_to_fp32(impl):
    dec, x, z = _decoder(channels=32)
    with torch.no_grad(), causal.use_impl(impl):
        lp32 = dec.log_prob(x, z)
        with prec.autocast_context("cpu", "bf16"):
            lp16 = dec.log_prob(x, z)
    assert lp16.dtype == torch.float32
    rel = ((lp16 - lp32).abs() / lp32.abs()).max()
    assert rel <= BF16_REL_TOL, float(rel)
    assert not torch.equal(lp16, lp32)  # bf16 really ran


def test_autocast_context():
    with prec.autocast_context("cpu", "fp32"):
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.randn(4, 4) @ torch.randn(4, 4)).dtype == torch.float32
    with prec.autocast_context(torch.device("cpu"), "bf16"):
        assert torch.is_autocast_enabled("cpu")
        assert (torch.randn(4, 4) @ torch.randn(4, 4)).dtype == torch.bfloat16
    assert prec.autocast_dtype("fp32") is None
    assert prec.autocast_dtype("bf16") is torch.bfloat16
    with pytest.raises(ValueError):
        prec.autocast_context("cpu", "fp16")
    with pytest.raises(ValueError):
        prec.autocast_dtype("tf32")


def test_keep_freed_memory_toggles():
    ok = prec.keep_freed_memory(True)
    assert isinstance(ok, bool)
    assert prec.keep_freed_memory(False) == ok  # back to glibc's defaults


def test_compile_decoder_without_core_is_a_no_op():
    layer = torch.nn.Linear(2, 2)
    assert prec.compile_decoder(layer) is layer


def _tiny_vae(seed=0):
    from maevae.config import load_config

    torch.manual_seed(seed)
    model = build_model(load_config("tiny/test").model, (1, 8, 8))
    x = (torch.rand(16, 1, 8, 8) < 0.5).float()
    model.initialize(x)
    return model.eval(), x


def test_bf16_decoder_head_runs_in_fp32():
    dec, x, z = _decoder(channels=32)
    zf = dec.z_features(z[0])
    with torch.no_grad(), prec.autocast_context("cpu", "bf16"):
        h = dec.core(torch.cat([x, zf], dim=1))
        logits = dec.logits_from_features(x, zf)
    assert h.dtype == torch.bfloat16 and logits.dtype == torch.float32
    with torch.no_grad():  # the head by hand, in fp32, on the bf16 core output
        ref = dec.head2(torch.nn.functional.elu(dec.head1(h.float())))
    assert torch.equal(logits, ref)


def test_full_precision_disables_an_autocast_and_is_a_no_op_outside_one():
    """Inside a bf16 autocast the region runs in fp32; outside one it adds no autocast
    region (a traced fp32 graph then keeps AOTAutograd's cache, BENCHMARKS.md)."""
    x, w = torch.randn(3, 4), torch.randn(5, 4)
    with prec.full_precision("cpu"):
        assert torch.nn.functional.linear(x, w).dtype == torch.float32
    assert type(prec.full_precision("cpu")).__name__ == "nullcontext"
    with prec.autocast_context("cpu", "bf16"):
        assert torch.nn.functional.linear(x, w).dtype == torch.bfloat16
        with prec.full_precision("cpu"):
            assert not torch.is_autocast_enabled("cpu")
            assert torch.nn.functional.linear(x, w).dtype == torch.float32
        assert torch.is_autocast_enabled("cpu")


def test_bf16_likelihood_keeps_encoder_and_prior_in_fp32():
    from maevae.inference.likelihood import importance_sampled_batch

    model, x = _tiny_vae()
    res = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        g = torch.Generator().manual_seed(5)
        res[name] = importance_sampled_batch(model, x[:4], 64, 32, g, dtype)
    # same z samples; log q and the flow prior's log p(z) are fp32 in both runs, so the KL
    # part of the estimate is identical, and only the decoder term differs
    assert torch.equal(res["bf16"].kl, res["fp32"].kl)
    assert not torch.equal(res["bf16"].recon, res["fp32"].recon)
    rel = ((res["bf16"].recon - res["fp32"].recon).abs() / res["fp32"].recon.abs()).max()
    assert rel <= BF16_REL_TOL, float(rel)


def test_maybe_compile_decoder_policy(monkeypatch):
    import torch._dynamo

    old = torch._dynamo.config.suppress_errors
    try:
        torch._dynamo.config.suppress_errors = False
        _check_compile_policy(monkeypatch)
    finally:
        torch._dynamo.config.suppress_errors = old


def _check_compile_policy(monkeypatch):
    warnings = []

    def fresh():
        dec, _, _ = _decoder()
        return dec

    def compiled(module):
        return module.core._compiled_call_impl is not None

    for setting, work in (("never", 10**9), ("auto", 999)):
        dec = fresh()
        assert not prec.maybe_compile_decoder(dec, setting, work, 1000, "cpu", warnings.append)
        assert not compiled(dec)
    monkeypatch.setattr(prec, "compile_unavailable", lambda device: None)
    for setting, work in (("auto", 1000), ("always", 0)):
        dec = fresh()
        assert prec.maybe_compile_decoder(dec, setting, work, 1000, "cpu", warnings.append)
        assert compiled(dec) and torch._dynamo.config.suppress_errors  # falls back to eager
    assert warnings == []
    monkeypatch.setattr(prec, "compile_unavailable", lambda device: "no C++ compiler")
    dec = fresh()
    assert not prec.maybe_compile_decoder(dec, "always", 0, 1000, "cpu", warnings.append)
    assert not compiled(dec)
    assert warnings == ["compile=always but no C++ compiler; running without torch.compile"]
    assert not prec.maybe_compile_decoder(torch.nn.Linear(2, 2), "always", 0, 1, "cpu")
    with pytest.raises(ValueError):
        prec.maybe_compile_decoder(fresh(), "yes", 0, 1, "cpu")


def test_compile_unavailable_without_a_cpp_compiler(monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "C++ compiler" in prec.compile_unavailable("cpu")
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
    assert prec.compile_unavailable("cpu") is None
    assert prec.compile_unavailable("meta") is not None


@pytest.mark.slow
def test_compiled_core_computes_the_eager_function():
    """torch.compile of the core (Inductor, 0.5-2 min cold): same log p(x|z) to fp32 rounding."""
    if prec.compile_unavailable("cpu"):
        pytest.skip(prec.compile_unavailable("cpu"))
    dec, x, z = _decoder()
    with torch.no_grad():
        ref = dec.log_prob(x, z)
        prec.compile_decoder(dec)
        out = dec.log_prob(x, z)
    assert dec.core._compiled_call_impl is not None
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_compiled_core_in_bf16_matches_plain_inductor():
    """The product's backend (exp_u20 in bf16 CPU graphs) against ``backend="inductor"``
    (Sleef's exp), both compiled, in bf16: log p(x|z) [3, 8] within 0.01 nats of each
    other, and apart from the fp32 result (so bf16 did run)."""
    if prec.compile_unavailable("cpu"):
        pytest.skip(prec.compile_unavailable("cpu"))
    import copy

    dec, x, z = _decoder()
    plain = copy.deepcopy(dec)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        prec.compile_decoder(dec)
        plain.core.compile(backend="inductor")
        out, ref = dec.log_prob(x, z), plain.log_prob(x, z)
    with torch.no_grad():
        fp32 = plain.log_prob(x, z)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-2)
    assert (out - fp32).abs().max() > 1e-4  # bf16 did run


def test_slow_bf16_names_the_cpu_without_native_kernels(monkeypatch):
    monkeypatch.setattr(prec, "_cpu_has_native_bf16", lambda: False)
    why = prec.slow_bf16("cpu")
    assert why.startswith(f"this CPU ({torch.backends.cpu.get_cpu_capability()}) has no native")
    warnings = []
    assert prec.note_slow_bf16("bf16", "cpu", "eval.precision", "pass --precision fp32",
                               warnings.append)
    assert not prec.note_slow_bf16("fp32", "cpu", "eval.precision", "x", warnings.append)
    assert warnings == [f"eval.precision=bf16 but {why}; pass --precision fp32"]
    monkeypatch.setattr(prec, "_cpu_has_native_bf16", lambda: True)
    assert prec.slow_bf16("cpu") is None
    assert not prec.note_slow_bf16("bf16", "cpu", "eval.precision", "x", warnings.append)
    assert prec.slow_bf16("meta") is None and len(warnings) == 1


def test_native_bf16_probe_is_onednns():
    """The probe is oneDNN's (AVX-512 BW/VL/DQ or AMX), the one that picks its bf16 kernels."""
    assert prec._cpu_has_native_bf16() == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
