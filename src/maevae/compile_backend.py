"""The ``torch.compile`` backend of the PixelCNN core: Inductor, with a cheaper exp in bf16
CPU graphs.

In bf16 on a CPU the compiled core spends more time in its ELUs than in its convolutions
(``benchmarks/op_profile.py``: 59% element-wise on an AMX Xeon). Inductor writes each ELU's
``exp(x) - 1`` with ATen's ``Vectorized::exp()`` (Sleef, 1 ulp). ATen's
``Vectorized::exp_u20()`` (at most 20 ulp of fp32, about 2.4e-6 relative; Inductor's own
flex-attention template uses it) is cheaper: on an AMX Xeon the bf16 core runs 6-11%
faster with it (``benchmarks/inductor_options.py``), a whole IS pass 1.5-3.5% and a
training step 3-6% (``benchmarks/throughput.py``, ``compiled`` vs ``compiled_sleef``).
Its error is under 1/1000 of a bf16 rounding step (2^-9 relative), so a bf16 activation
can change only where the exact value lies that close to a rounding boundary, and then by
one bf16 step; over every bf16 value in [-20, 2] the compiled ELU came out identical with
either exp.

:data:`INDUCTOR` is Inductor with that exp in the graphs traced under a CPU autocast to
bf16; every other graph (fp32, GPU) is compiled exactly as ``backend="inductor"`` compiles
it. The choice is part of Inductor's FX-graph cache key (a no-op post-grad pass with its own
uuid), so a graph cached by one kind of compile is never served to the other. Where this
PyTorch's Inductor lacks the hooks used here, where a custom post-grad pass is already set,
or where compiling with the cheaper exp fails, the graph is compiled plainly.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["FAST_EXP", "INDUCTOR", "fast_exp_codegen", "fast_exp_wanted"]

FAST_EXP = "exp_u20"  # the ATen Vectorized method written for every exp of a bf16 graph
FAST_EXP_DTYPES = (torch.bfloat16,)


def _hooks():
    """(Inductor's vectorised C++ op overrides, its config, the custom-pass base class), or
    None where this PyTorch has no such hooks."""
    try:
        from torch._inductor import config
        from torch._inductor.codegen.cpp import CppVecOverrides
        from torch._inductor.custom_graph_pass import CustomGraphPass
    except ImportError:
        return None
    if not all(n in CppVecOverrides.__dict__ for n in ("exp", "expm1")) \
            or not hasattr(config, "post_grad_custom_post_pass"):
        return None
    return CppVecOverrides, config, CustomGraphPass


def _cache_key_pass(base):
    class _FastExpKey(base):
        """No-op post-grad pass: puts the cheaper exp into Inductor's cache key."""

        def __call__(self, graph) -> None:
            return None

        def uuid(self):
            return f"maevae.compile_backend.{FAST_EXP}.v1"

    return _FastExpKey()


@contextlib.contextmanager
def fast_exp_codegen():
    """While active, Inductor's vectorised CPU code writes ``exp`` / ``expm1`` with
    :data:`FAST_EXP`, and its cache key says so; yields True. Yields False, changing
    nothing, where the hooks are missing or a custom post-grad pass is already set."""
    hooks = _hooks()
    if hooks is None or hooks[1].post_grad_custom_post_pass is not None:
        yield False
        return
    vec, config, base = hooks
    saved = vec.__dict__["exp"], vec.__dict__["expm1"]
    vec.exp = staticmethod(lambda x: f"{x}.{FAST_EXP}()")
    vec.expm1 = staticmethod(lambda x: f"{x}.{FAST_EXP}() - decltype({x})(1)")
    try:
        with config.patch(post_grad_custom_post_pass=_cache_key_pass(base)):
            yield True
    finally:
        vec.exp, vec.expm1 = saved


def fast_exp_wanted() -> bool:
    """Whether the graph compiled now is traced under a CPU autocast to bf16 (a backend runs
    inside the first call of the compiled module, under the caller's autocast)."""
    return torch.is_autocast_enabled("cpu") \
        and torch.get_autocast_dtype("cpu") in FAST_EXP_DTYPES


def _inductor(gm, example_inputs):
    """A ``torch.compile`` backend: Inductor, with :data:`FAST_EXP` where
    :func:`fast_exp_wanted`."""
    from torch._inductor.compile_fx import compile_fx

    if fast_exp_wanted():
        try:
            with fast_exp_codegen():
                return compile_fx(gm, example_inputs)
        except Exception:  # noqa: BLE001  (e.g. a C++ build without exp_u20: compile plainly)
            pass
    return compile_fx(gm, example_inputs)


# One backend object for every core: torch.compile recompiles a function (and counts it
# against its recompile limit) when it meets a backend object other than the one it cached.
INDUCTOR = _inductor
