"""The compiled core's backend: Inductor, with exp_u20 in bf16 CPU graphs only."""

import pytest
import torch
import torch.nn.functional as F

from maevae import compile_backend as cb
from maevae import device as prec

pytestmark = pytest.mark.skipif(prec.compile_unavailable("cpu") is not None,
                                reason=str(prec.compile_unavailable("cpu")))


def _elu_code(x: torch.Tensor, backend, autocast: bool):
    """(ELU of x compiled with ``backend``, the C++ Inductor wrote for it)."""
    from torch._inductor.utils import run_and_get_code

    torch._dynamo.reset()
    fn = torch.compile(lambda t: F.elu(t + 0.0), backend=backend)
    with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
        y, code = run_and_get_code(fn, x)
    return y, "\n".join(code)


def _all_bf16_in(lo: float, hi: float) -> torch.Tensor:
    """Every finite bf16 value in [lo, hi], as a bf16 tensor."""
    bits = torch.arange(-2**15, 2**15, dtype=torch.int32).to(torch.int16)
    v = bits.view(torch.bfloat16)
    return v[torch.isfinite(v) & (v >= lo) & (v <= hi)].contiguous()


def test_bf16_elu_uses_exp_u20_within_one_bf16_step():
    x = _all_bf16_in(-20.0, 2.0)  # every bf16 value where exp(x) - 1 is not yet -1
    y, code = _elu_code(x, cb.INDUCTOR, autocast=True)
    assert f".{cb.FAST_EXP}()" in code and ".exp()" not in code
    plain, plain_code = _elu_code(x, "inductor", autocast=True)
    assert ".exp()" in plain_code and cb.FAST_EXP not in plain_code
    ref = F.elu(x.double())  # the exact ELU
    assert y.dtype == plain.dtype == torch.bfloat16
    # Inductor's ELU is exp(x) - 1 in fp32 with either exp: below |x| ~ 1e-5 it cancels
    # (as plain Inductor does); above, both are the correctly rounded bf16 value
    # (error <= half a step; one step allowed)
    step = torch.finfo(torch.bfloat16).eps * ref.abs()
    big = x.double().abs() >= 1e-5
    assert ((y.double() - ref).abs() <= step)[big].all()
    assert ((plain.double() - ref).abs() <= step)[big].all()
    assert (y != plain).double().mean().item() < 1e-3  # at most 1 value in 1000 differs


def test_fp32_graphs_are_compiled_as_plain_inductor():
    x = torch.linspace(-20.0, 2.0, 4099)
    y, code = _elu_code(x, cb.INDUCTOR, autocast=False)
    plain, _ = _elu_code(x, "inductor", autocast=False)
    assert cb.FAST_EXP not in code
    assert torch.equal(y, plain)


def test_fast_exp_codegen_restores_inductor_and_yields_to_a_custom_pass():
    from torch._inductor import config
    from torch._inductor.codegen.cpp import CppVecOverrides

    before = CppVecOverrides.exp("v"), CppVecOverrides.expm1("v")
    with cb.fast_exp_codegen() as active:
        assert active and CppVecOverrides.exp("v") == f"v.{cb.FAST_EXP}()"
        assert config.post_grad_custom_post_pass.uuid().endswith(f"{cb.FAST_EXP}.v1")
    assert (CppVecOverrides.exp("v"), CppVecOverrides.expm1("v")) == before
    assert config.post_grad_custom_post_pass is None

    class Theirs(torch._inductor.custom_graph_pass.CustomGraphPass):
        def __call__(self, graph):
            return None

        def uuid(self):
            return "theirs"

    theirs = Theirs()
    with config.patch(post_grad_custom_post_pass=theirs), cb.fast_exp_codegen() as active:
        assert not active and CppVecOverrides.exp("v") == before[0]
        assert config.post_grad_custom_post_pass is theirs


def test_fast_exp_is_wanted_only_under_a_cpu_bf16_autocast():
    assert not cb.fast_exp_wanted()
    with torch.autocast("cpu", torch.bfloat16):
        assert cb.fast_exp_wanted()
    with torch.autocast("cpu", torch.float16):
        assert not cb.fast_exp_wanted()


def test_a_failing_fast_exp_compile_falls_back_to_plain_inductor(monkeypatch):
    """An exp method this ATen lacks fails to build: the graph compiles plainly instead."""
    monkeypatch.setattr(cb, "FAST_EXP", "no_such_exp")
    x = torch.linspace(-3.0, 1.0, 257).to(torch.bfloat16)
    y, code = _elu_code(x, cb.INDUCTOR, autocast=True)
    plain, _ = _elu_code(x, "inductor", autocast=True)
    assert ".no_such_exp()" in code and ".exp()" in code  # tried, failed, compiled plainly
    assert torch.equal(y, plain)
