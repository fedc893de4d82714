"""The oneDNN Graph fuser (TorchScript's ``torch.jit.enable_onednn_fusion``) on the decoder core.

    python benchmarks/onednn_graph.py [--dtype fp32|bf16|both] [--chunk 128] [--rounds 5]
                                      [--threads N] [--seed 0]

oneDNN Graph fuses a convolution with the ELU after it, and a convolution with a residual
add and the ELU after that, which ``torch.compile`` (Inductor) cannot: on CPU it calls
oneDNN's convolution and runs the ELU / add as a separate fused loop, one more read and write
of every convolution output. This script measures whether that fusion would help the IS pass.

On the paper's binary-MNIST model (small decoder, DDI, weight norm folded; the model of
``throughput.py``) it runs the PixelCNN core on one IS chunk (``--chunk`` samples of one
image with their z feature maps, channels-last) three ways, interleaved round by round:
``eager``, ``compiled`` (``torch.compile`` of the core, plain Inductor: the product's fp32
path; its bf16 one adds ``exp_u20``, ``inductor_options.py``) and
``onednn_graph`` (traced, frozen, the fuser on), and prints for each dtype the median time
per pass, the rate in samples/s and the largest |difference| from ``eager``. A fourth,
``onednn_graph_clone``, gives each skip block its own copy of its input, which works around
the fuser's wrong result below at the cost of one copy per skip block.

It also checks a seven-convolution repro of plain ``nn.Conv2d`` layers: one ELU'd tensor
feeding two residual bottlenecks ``ELU(x + conv(ELU(conv(ELU(conv(x))))))``, the pattern of
the PixelCNN's skip blocks. Its ``repro`` line gives the largest |difference| from eager of
the fused graph's third call: a difference far above rounding is a wrong result of the fuser
itself, not of maevae.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from maevae import device as prec  # noqa: E402
from throughput import (  # noqa: E402  (a sibling script)
    add_core_pass_args,
    core_chunk_input,
    core_pass_setup,
    dtypes_to_run,
    interleaved_medians,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_core_pass_args(p, rounds=5)
    return p.parse_args(argv)


class _Bottleneck(nn.Module):
    """``ELU(x + 1x1(ELU(3x3(ELU(1x1(x))))))`` with plain convolutions; [N, C, H, W] kept."""

    def __init__(self, c: int):
        super().__init__()
        self.reduce = nn.Conv2d(c, c // 2, 1)
        self.mid = nn.Conv2d(c // 2, c // 2, 3, padding=1)
        self.expand = nn.Conv2d(c // 2, c, 1)

    def forward(self, x):
        return F.elu(x + self.expand(F.elu(self.mid(F.elu(self.reduce(x))))))


class _TwoConsumers(nn.Module):
    """One ELU'd tensor read by two residual bottlenecks (as a PixelCNN skip block reads a
    layer that the next block reads too); [N, 3, H, W] -> [N, C, H, W]."""

    def __init__(self, c: int = 16):
        super().__init__()
        self.first = nn.Conv2d(3, c, 3, padding=1)
        self.a, self.b = _Bottleneck(c), _Bottleneck(c)

    def forward(self, x):
        h = F.elu(self.first(x))
        return self.a(h) + self.b(h)


class _OwnInput(nn.Module):
    """``module`` on a copy of its input: no other reader of that tensor shares its buffer."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x.clone())


def with_own_skip_inputs(core: nn.Module) -> nn.Module:
    """A copy of the PixelCNN ``core`` whose skip blocks each read a copy of their input."""
    core = copy.deepcopy(core)
    core.skips = nn.ModuleList(_OwnInput(s) for s in core.skips)
    return core


def fused(module: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """``module`` traced and frozen for the oneDNN Graph fuser (turned on for the process)."""
    torch.jit.enable_onednn_fusion(True)
    return torch.jit.freeze(torch.jit.trace(module, example, check_trace=False))


def repro_difference(seed: int) -> float:
    """Largest |fused - eager| of :class:`_TwoConsumers` at the fused graph's third call (the
    first call profiles, the second compiles the fused partitions)."""
    torch.manual_seed(seed)
    m = _TwoConsumers().eval()
    x = torch.randn(4, 3, 12, 12)
    with torch.no_grad():
        ref = m(x)
        f = fused(m, x)
        for _ in range(2):
            f(x)
        return (f(x) - ref).abs().max().item()


def main(argv=None) -> dict:
    args = parse_args(argv)
    if not (hasattr(torch.jit, "enable_onednn_fusion") and torch.backends.mkldnn.is_available()):
        sys.exit(f"onednn_graph.py: this PyTorch ({torch.__version__}) has no oneDNN Graph fuser "
                 "(torch.jit.enable_onednn_fusion with a oneDNN build); nothing to measure")
    model, x, device, out = core_pass_setup(
        args, "oneDNN Graph vs torch.compile on the PixelCNN core")
    dec = model.decoder
    print(f"repro (two bottlenecks reading one tensor): max |fused - eager| = "
          f"{repro_difference(args.seed):.3g} (fp32; rounding is ~1e-6)")
    print(f"{'dtype':5s} {'variant':18s} {'ms/pass':>8s} {'samples/s':>10s} {'max|diff|':>10s}")
    for d in dtypes_to_run(args.dtype, device):
        with torch.no_grad(), prec.autocast(device, d):
            inp = core_chunk_input(model, x, args.chunk, args.seed + 1)
            compiled = copy.deepcopy(dec.core)
            compiled.compile()
            fns = {"eager": dec.core, "compiled": compiled,
                   "onednn_graph": fused(dec.core, inp),
                   "onednn_graph_clone": fused(with_own_skip_inputs(dec.core), inp)}
            ref = dec.core(inp).float()
            medians = interleaved_medians(fns, inp, args.rounds, device)
            diffs = {name: (fn(inp).float() - ref).abs().max().item()
                     for name, fn in fns.items()}
        out["runs"][d] = {}
        for name in fns:
            t = medians[name]
            out["runs"][d][name] = {"s_per_pass": t, "samples_per_s": args.chunk / t,
                                    "max_abs_diff": diffs[name]}
            print(f"{d:5s} {name:18s} {1e3 * t:8.1f} {args.chunk / t:10.1f} "
                  f"{diffs[name]:10.3g}")
    return out


if __name__ == "__main__":
    main()
