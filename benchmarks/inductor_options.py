"""Inductor's options on the decoder core: which of them speeds up the compiled IS pass?

    python benchmarks/inductor_options.py [--dtype fp32|bf16|both] [--chunk 128] [--rounds 9]
                                          [--variants inductor,frozen,...] [--threads N]

On the paper's binary-MNIST model (small decoder, DDI, weight norm folded; the model of
``throughput.py``) it runs the PixelCNN core on one IS chunk (``--chunk`` samples of one
image with their z feature maps, channels-last) without gradients, in each of these forms,
the compiled ones interleaved round by round in the order given, then ``eager`` on its own
(medians after two warm-up rounds; a pass right after an eager one ran ~10% slower):

* ``eager``: the core as it is;
* ``inductor``: ``torch.compile(core)``, plain Inductor (the product's compile in fp32; in
  bf16 the product's compile is ``exp_u20`` below, ``maevae.compile_backend``);
* ``frozen``: Inductor freezing (weights constant-folded, convolution weights pre-packed);
* ``conv_1x1_as_mm``: freezing, and the 1×1 convolutions lowered to matmuls;
* ``max_autotune``: freezing, 1×1 as matmuls, and max-autotune with the C++ GEMM template
  (AMX / AVX-512 micro-kernels, ELU epilogues fused) against ATen;
* ``exp_u20``: Inductor, with every vectorised ``exp`` (the ELUs' ``exp(x) - 1``) written
  as ATen's ``Vectorized::exp_u20()`` (≤ 20 ulp) instead of Sleef's 1-ulp ``exp()``, by
  patching Inductor's C++ code generation while this backend compiles, in every dtype (the
  product does it in bf16 graphs only);
* ``frozen_exp_u20``: freezing and ``exp_u20`` together.

For each dtype it prints the median ms per pass, samples/s, the ratio to ``inductor`` and
the largest |difference| of the output from ``eager``. Every variant compiles its own graph:
distinct options give distinct Inductor cache keys, and ``exp_u20`` adds a no-op post-grad
pass with its own uuid for that (``maevae.compile_backend.fast_exp_codegen``).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from maevae import device as prec  # noqa: E402
from maevae.compile_backend import fast_exp_codegen  # noqa: E402
from throughput import (  # noqa: E402  (a sibling script)
    add_core_pass_args,
    core_chunk_input,
    core_pass_setup,
    dtypes_to_run,
    interleaved_medians,
    raise_recompile_limit,
)

FROZEN = {"freezing": True}
MM = {**FROZEN, "conv_1x1_as_mm": True}
OPTIONS = {
    "inductor": None,
    "frozen": FROZEN,
    "conv_1x1_as_mm": MM,
    "max_autotune": {**MM, "max_autotune": True, "max_autotune_gemm_backends": "CPP,ATEN"},
    "exp_u20": None,
    "frozen_exp_u20": FROZEN,
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_core_pass_args(p, rounds=9)
    p.add_argument("--variants", default=",".join(OPTIONS),
                   help=f"comma-separated, of {', '.join(OPTIONS)} (eager always runs)")
    args = p.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(args.variants) - set(OPTIONS))
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(OPTIONS)}")
    return args


def _exp_u20_backend(options: dict | None):
    """Inductor with ``options`` (as ``torch.compile(options=...)``), exp as ``exp_u20``."""
    from torch._inductor.compile_fx import compile_fx

    def backend(gm, example_inputs):
        with fast_exp_codegen():
            return compile_fx(gm, example_inputs, config_patches=dict(options or {}))

    return backend


def compiled_variant(core: torch.nn.Module, name: str):
    """A compiled copy of ``core`` in the form ``name`` of :data:`OPTIONS`."""
    core = copy.deepcopy(core)
    options = OPTIONS[name]
    if name.endswith("exp_u20"):
        return torch.compile(core, backend=_exp_u20_backend(options))
    return torch.compile(core, options=dict(options)) if options else torch.compile(core)


def main(argv=None) -> dict:
    args = parse_args(argv)
    raise_recompile_limit()  # one graph per variant and dtype
    model, x, device, out = core_pass_setup(
        args, "Inductor options on the PixelCNN core (no gradients)")
    core = model.decoder.core
    print(f"{'dtype':5s} {'variant':15s} {'ms/pass':>8s} {'samples/s':>10s} "
          f"{'vs inductor':>11s} {'max|diff|':>10s}")
    for d in dtypes_to_run(args.dtype, device):
        with torch.no_grad(), prec.autocast(device, d):
            inp = core_chunk_input(model, x, args.chunk, args.seed + 1)
            fns = {v: compiled_variant(core, v) for v in args.variants}
            ref = core(inp).float()
            # eager apart: the pass right after an eager one ran ~10% slower, whatever it was
            medians = {**interleaved_medians(fns, inp, args.rounds, device),
                       **interleaved_medians({"eager": core}, inp, args.rounds, device)}
            fns["eager"] = core
            diffs = {n: (fn(inp).float() - ref).abs().max().item() for n, fn in fns.items()}
        base = medians.get("inductor")
        out["runs"][d] = {}
        for name in fns:
            t = medians[name]
            vs = base / t if base else float("nan")
            out["runs"][d][name] = {"s_per_pass": t, "samples_per_s": args.chunk / t,
                                    "vs_inductor": vs, "max_abs_diff": diffs[name]}
            print(f"{d:5s} {name:15s} {1e3 * t:8.1f} {args.chunk / t:10.1f} {vs:11.3f} "
                  f"{diffs[name]:10.3g}")
    return out


if __name__ == "__main__":
    main()
