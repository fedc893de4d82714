"""Where the time of an IS pass and of a training step goes: convolutions against the peak.

    python benchmarks/op_profile.py [--dtype fp32|bf16|both] [--variants fast,compiled]
                                    [--k 512] [--chunk 128] [--what is,train] [--json]

For each dtype and variant (``throughput.py``'s variants, the same model, data and steps)
it warms up, runs one counted pass of the eager path and one ``torch.profiler`` pass of the
variant (after its own warm-up) of

* ``is``: ``importance_sampled_nll`` of K samples of one image (chunk ``--chunk``), and
* ``train``: one training step (batch 100, forward, backward, clipping, Adam),

and splits the profiled wall time into

* **conv**: the self time of every convolution op (``aten::convolution`` and the oneDNN
  kernels below it, forward and backward), with the FLOPs those convolutions execute
  (counted by a dispatch mode on the variant's eager path, equal to ``FlopCounterMode``'s
  convolution FLOPs, so the causal decomposition's few multiplied masked taps count: this
  is the kernels' own rate);
  ``conv GFLOP/s`` ÷ the same run's 4096³ matmul peak is the convolutions' efficiency;
* **elementwise**: ELU, add, mul, casts and copies, … in eager; Inductor's fused C++ kernels
  when compiled (named by ``torch._inductor.config.cpp.enable_kernel_profile``);
* **other**: everything else (matmuls of the encoder and prior, optimizer, reductions,
  Python overhead).

``%limit`` is the pass's useful work (counted as ``throughput.py`` counts it: masked-out
multiplies not counted) at the same run's matmul peak, over its profiled time, and
``conv-only %limit`` the same over its convolutions' time alone: the most the pass could
reach if every other op took no time, so a bound on what any fusion of the ELUs, adds and
casts into the convolutions can give. The compiled variants compile the core as the product
does (``maevae.device.compile_decoder``'s backend). Traced in bf16 on a CPU with AMX, that
core runs its no-grad masked convolutions as ``rows`` where the eager path runs ``crop``
(``causal.no_grad_strategy``): up to 11% fewer executed FLOPs than the eager count, so its
``conv GFLOP/s`` reads up to 11% high there; the two ``%limit`` columns count useful work
and are exact.

For the eager variants it also prints the convolutions by direction and shape (calls, ms,
GFLOP/s, % of peak; timed around each call on the eager path, which the compiled core
shares), so a target that is missed because of one kernel shows that kernel. The profiler
adds a little overhead per op; compare the shares, not the totals, with ``throughput.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from maevae import device as prec  # noqa: E402
from maevae.config import ObjectiveConfig  # noqa: E402
from throughput import (  # noqa: E402  (a sibling script)
    BATCH,
    VARIANTS,
    Trainer,
    count_flops,
    dtypes_to_run,
    is_pass,
    machine_info,
    make_model,
    matmul_peaks,
    peak_matmul_n,
    raise_recompile_limit,
    set_decoder_variant,
    variant_core,
    variant_settings,
)

CONV_OPS = ("convolution", "mkldnn_convolution", "_convolution_pointwise", "conv2d")
ELEMENTWISE_OPS = ("elu", "add", "mul", "sub", "div", "sigmoid", "softplus", "exp", "log",
                   "neg", "where", "clamp", "relu", "threshold", "fill", "copy", "_to_copy")


class _ConvFlops(TorchDispatchMode):
    """FLOPs of every convolution executed (forward + backward), and by (direction, input
    shape, weight shape): FLOPs, calls and the kernels' wall time (timed here, around the
    op, rather than by the profiler: ``record_shapes`` perturbed the eager fp32 pass,
    attributing ~5x the time to some kernels)."""

    def __init__(self):
        super().__init__()
        self.total = 0.0
        self.by_shape: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0, 0.0])

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__
        t0 = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        dt = time.perf_counter() - t0
        if name.startswith("convolution_backward"):
            grad_out, x, w, mask = args[0], args[1], args[2], args[-1]
            macs = grad_out.numel() * w[0].numel()  # per gradient computed
            flops = 2.0 * macs * (int(mask[0]) + int(mask[1]))
            key = ("backward", tuple(x.shape), tuple(w.shape))
        elif name.startswith("convolution"):
            x, w = args[0], args[1]
            flops = 2.0 * out.numel() * w[0].numel()
            key = ("forward", tuple(x.shape), tuple(w.shape))
        else:
            return out
        self.total += flops
        entry = self.by_shape[key]
        entry[0] += flops
        entry[1] += 1
        entry[2] += dt
        return out


def _category(name: str) -> str:
    base = name.split("::")[-1]
    if any(base == op or base.startswith(op + ".") for op in CONV_OPS) or "convolution" in base:
        return "conv"
    # "elu", "elu_", "elu_backward", "add.Tensor" (not "addmm"); Inductor's fused kernels
    if "cpp_fused" in base or any(base == op or base.startswith((op + "_", op + "."))
                                  for op in ELEMENTWISE_OPS):
        return "elementwise"
    return "other"


def _profile(fn):
    """(total self us, self us by category, top ops) of ``fn()`` under the profiler."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.key_averages()
    total_us = sum(e.self_cpu_time_total for e in events)
    split = defaultdict(float)
    top = defaultdict(float)
    for e in events:
        split[_category(e.key)] += e.self_cpu_time_total
        top[e.key] += e.self_cpu_time_total
    return total_us, dict(split), sorted(top.items(), key=lambda kv: -kv[1])[:8]


def profile_one(model, x, dtype: str, v, what: str, k: int, chunk: int, peak: float,
                trainer: Trainer, initial, compiled: dict, useful_gflop: float) -> dict:
    """One profiled pass of variant ``v``; ``compiled`` caches its compiled cores by
    (freezing, Sleef exp), ``useful_gflop`` is the pass's useful work (throughput.py's)."""
    eager_core = model.decoder.core

    def reset():
        with torch.no_grad():
            for p, p0 in initial:
                p.copy_(p0)

    def run():
        reset()
        if what == "is":
            is_pass(model, x[:1], k, chunk, dtype, v.fold)
        else:
            trainer.step()

    set_decoder_variant(model.decoder, v)
    trainer.use_fused(v.fused_adam)
    with variant_settings(v):
        try:
            run()  # eager warm-up (oneDNN primitives created)
            counter = _ConvFlops()  # executed conv FLOPs and kernel times: the eager path
            with counter:
                run()
            model.decoder.core = variant_core(v, what, eager_core, compiled)
            run()  # warm-up (and compilation)
            total_us, split, top = _profile(run)
        finally:
            model.decoder.core = eager_core
            set_decoder_variant(model.decoder, None)
    conv_s = split.get("conv", 0.0) / 1e6
    shapes = []
    if not v.compile:  # the compiled core calls the same kernels (bar bf16 on AMX)
        for (direction, xs, ws), (flops, calls, sec) in sorted(counter.by_shape.items(),
                                                              key=lambda kv: -kv[1][2]):
            gfs = flops / sec / 1e9 if sec else float("nan")
            if sec < 1e-3:  # the encoder's one-image layers and the like
                continue
            shapes.append({"direction": direction, "input": list(xs), "weight": list(ws),
                           "calls": calls, "ms": sec * 1e3, "gflop_s": gfs,
                           "pct_peak": 100 * gfs / peak})
    conv_gfs = counter.total / conv_s / 1e9 if conv_s else float("nan")
    # the fraction of the limit (useful work at the matmul peak) this pass reaches, and the
    # most it could reach if everything but its convolutions took no time
    pct_limit = 100 * useful_gflop / (total_us / 1e6) / peak
    ceiling = 100 * useful_gflop / conv_s / peak if conv_s else float("nan")
    return {"variant": v.name, "dtype": dtype, "what": what, "total_ms": total_us / 1e3,
            "useful_gflop": useful_gflop, "pct_limit": pct_limit,
            "conv_only_pct_limit": ceiling,
            "split_ms": {c: us / 1e3 for c, us in split.items()},
            "conv_gflop": counter.total / 1e9, "conv_gflop_s": conv_gfs,
            "conv_pct_peak": 100 * conv_gfs / peak, "conv_shapes": shapes,
            "top_ops": [{"op": name, "ms": us / 1e3} for name, us in top]}


def print_report(result: dict) -> None:
    m = result["machine"]
    p = result["peak"]
    print(f"# op profile  {m['date']}  {m['cpu']} ({m['cpu_cores']} cores), torch {m['torch']}, "
          f"{m['threads']} threads; K={result['k']}, chunk {result['chunk']}, batch {BATCH}")
    cpu, dtypes = torch.device("cpu"), {"fp32": torch.float32, "bf16": torch.bfloat16}
    sizes = {d: peak_matmul_n(cpu, dtypes[d]) for d in p}
    print("# peak matmul: " + ", ".join(f"{d} {v:.0f} GFLOP/s ({sizes[d]}^3)"
                                        for d, v in p.items()))
    u = result["useful_gflop"]
    print(f"# useful work: {u['train']:.1f} GFLOP per training step ({BATCH} images), "
          f"{u['is']:.1f} per IS pass (K={result['k']})")
    print(f"\n{'variant':10s} {'dtype':5s} {'what':5s} {'total ms':>9s} {'conv ms':>8s} "
          f"{'conv %':>6s} {'elem ms':>8s} {'elem %':>6s} {'other %':>7s} {'conv GFLOP/s':>12s} "
          f"{'% peak':>6s} {'%limit':>6s} {'conv-only %limit':>16s}")
    for r in result["profiles"]:
        s, t = r["split_ms"], r["total_ms"]
        conv, elem, other = s.get("conv", 0.0), s.get("elementwise", 0.0), s.get("other", 0.0)
        print(f"{r['variant']:10s} {r['dtype']:5s} {r['what']:5s} {t:9.1f} {conv:8.1f} "
              f"{100 * conv / t:6.1f} {elem:8.1f} {100 * elem / t:6.1f} {100 * other / t:7.1f} "
              f"{r['conv_gflop_s']:12.1f} {r['conv_pct_peak']:6.1f} {r['pct_limit']:6.1f} "
              f"{r['conv_only_pct_limit']:16.1f}")
    print("\n%limit: the pass's useful work (masked-out multiplies not counted) at the matmul "
          "peak, over its profiled time;\nconv-only %limit: the same over its convolutions' "
          "time alone, the most any fusion of the other ops could reach.")
    for r in result["profiles"]:
        print(f"\n## {r['variant']} {r['dtype']} {r['what']}: top ops by self time: "
              + ", ".join(f"{o['op']} {o['ms']:.1f} ms" for o in r["top_ops"][:6]))
        if r["conv_shapes"]:
            print("  convolutions taking >= 1 ms, by shape (input [N,C,H,W] x weight "
                  "[O,I,kh,kw]; eager, timed around each call):")
        for c in r["conv_shapes"]:
            print(f"  {c['direction']:8s} {str(c['input']):20s} x {str(c['weight']):16s} "
                  f"{c['calls']:4d} calls "
                  f"{c['ms']:8.1f} ms {c['gflop_s']:8.1f} GFLOP/s {c['pct_peak']:5.1f}% of peak")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtype", choices=["fp32", "bf16", "both"], default="both")
    ap.add_argument("--variants", default="fast,compiled")
    ap.add_argument("--what", default="is,train", help="comma-separated: is, train")
    ap.add_argument("--k", type=int, default=512)
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--malloc", choices=list(prec.MALLOC_POLICIES), default="bounded",
                    help="glibc allocator policy (default bounded, the product's)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    whats = args.what.split(",")
    for name in args.variants.split(","):
        if name not in VARIANTS:
            ap.error(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    for w in whats:
        if w not in ("is", "train"):
            ap.error(f"--what takes 'is' and/or 'train', got {w!r}")
    if args.threads:
        torch.set_num_threads(args.threads)
    prec.set_malloc_policy(args.malloc)
    import torch._inductor.config as inductor_config

    inductor_config.cpp.enable_kernel_profile = True  # name the fused kernels in the profile
    raise_recompile_limit()
    device = torch.device("cpu")
    result = {"k": args.k, "chunk": args.chunk, "machine": machine_info(device),
              "peak": matmul_peaks(device, dtypes_to_run(args.dtype, device)), "profiles": []}
    for dtype in result["peak"]:
        model, x = make_model("small", device, args.seed)
        trainer = Trainer(model, x, dtype, ObjectiveConfig(eta=1.0, gamma=0.5))
        initial = [(p, p.clone()) for p in model.state_dict().values()]
        # useful work (masked-out multiplies not counted), as throughput.py counts it
        useful = {"train": count_flops(trainer.step, model)[1] / 1e9,
                  "is": count_flops(lambda m=model, x1=x[:1]: is_pass(m, x1, args.k, args.chunk,
                                                                      "fp32", False),
                                    model)[1] / 1e9}
        result["useful_gflop"] = useful
        compiled: dict = {}
        for name in args.variants.split(","):
            for what in whats:
                result["profiles"].append(profile_one(
                    model, x, dtype, VARIANTS[name], what, args.k, args.chunk,
                    result["peak"][dtype], trainer, initial, compiled, useful[what]))
                print(f"... done {name} {dtype} {what}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(result))
    else:
        print_report(result)
    return result


if __name__ == "__main__":
    main()
