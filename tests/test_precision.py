"""The precision switch and the evaluation helpers (fold, autocast, allocator)."""

from __future__ import annotations

import pytest
import torch

from maevae.config import RunConfig
from maevae.evaluate import precision as prec
from maevae.models.decoders import PixelCNNDecoder
from maevae.models.vae import build_model
from maevae.nn import causal
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
        with prec.folded(dec):
            assert prec.is_folded(dec)
            out = dec.log_prob(x, z)
    assert torch.equal(out, ref)
    assert not prec.is_folded(dec)


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
        prec.fold_for_eval(model)
        assert prec.is_folded(model) and not model.training
        q2 = model.encoder(x)
        out = (model.decoder.log_prob(x, z), model.prior.log_prob(z[0]), q2.mu)
    for a, b in zip(out, ref):
        assert torch.equal(a, b)
    prec.unfold(model)
    assert not prec.is_folded(model)


def test_folded_context_restores_training_mode():
    dec, x, z = _decoder()
    dec.train()
    with prec.folded(dec):
        assert not dec.training
    assert dec.training and not prec.is_folded(dec)


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
