"""Throughput of the paper's binary-MNIST model: training img/s, IS-likelihood samples/s.

    python benchmarks/throughput.py [--json] [--device cpu|cuda] [--dtype fp32|bf16|both]
                                    [--decoder small|large|both] [--steps N] [--k 512]
                                    [--variants reference,fast] [--compile] [--threads N]

For each (decoder, dtype) it builds the model (random binary 28×28 data, seeded, DDI on
the batch) and measures, **interleaving the variants round by round** so that a shared,
noisy machine affects them alike (medians over the timed rounds):

* training img/s: batch 100, one full step ``model.terms(x, 1)`` -> ``training_loss`` (eta 1,
  gamma 0.5) -> backward -> ``clip_grad_norm_(5)`` -> Adam step;
* IS-likelihood samples/s: ``importance_sampled_nll`` with K samples (default 512) of one
  image, and the fp32/bf16 NLL difference on the same samples;
* peak memory of K = 4096 (CPU: max-RSS growth of a fresh subprocess; CUDA:
  ``torch.cuda.max_memory_allocated``);
* FLOPs: conv/linear/matmul FLOPs counted with ``FlopCounterMode`` on the masked reference
  (dense, as in SPEC §7), minus the multiplies by masked-out weights (counted per masked
  layer from its mask): the *useful* GFLOP per image / per sample; achieved GFLOP/s;
* the machine's peak: a 4096×4096 fp32 and bf16 matmul on the same threads;
* ratios to the reference figures (authors' code on the AMD EPYC machine kind) and, as
  ``vs tgt``, the fraction of the limit (``%limit``) over the target fraction.

On CPU it also reports CPU seconds per step (user + system of the whole process): on a
shared machine wall-clock time includes waiting for the cores; ``cpu_normalised`` is
units / (CPU seconds / threads), the throughput that the measured work would give if the
threads had the cores to themselves (an estimate, labelled as such).

Variants (``--variants``, comma-separated):
  reference   masked convs (dense k×k with zeroed weights), NCHW, WN recomputed at eval
  masked_cl   reference + channels-last activations
  fast        causal convs (maevae.nn.causal, strategy "auto"), channels-last, WN folded
              for the likelihood pass
  fast_nofold fast without folding
  fast_share  fast, with the decoder's first layer's image part once per image
              (``PixelCNNDecoder.share_image = True``; eager default "auto" does not share)
  compiled    fast + torch.compile of the PixelCNN core as the product compiles it
              (``maevae.compile_backend.INDUCTOR``; ``--compile`` adds it)
  compiled_sleef  compiled with plain ``backend="inductor"``: Sleef's exp in bf16 graphs
              too (the product's backend writes exp_u20 there), the same-run "before"
  compiled_noshare  compiled with ``share_image = False`` (compiled default "auto" shares)
  compiled_headout  compiled with ``head_in_core = False``: the output head runs eagerly
              after the compiled core (the product before 2026-12-03 17:40 UTC)
  compiled_frozen   compiled with Inductor freezing (``options={"freezing": True}``:
              weights constant-folded into the inference graphs, Sleef exp; IS pass
              only, the training step uses the product's compiled core)
  fast_crop / compiled_crop   fast / compiled with every masked conv without gradients
              as ``crop`` (the choice on every CPU before 2026-12-03; AVX2-only CPUs now
              run 7×7 kernels as ``rows``, and the compiled core in bf16 on AMX CPUs every
              kernel): the same-run "before" of those changes
  fast_rows / compiled_rows   the same with every such conv as ``rows``: what that
              choice would give on a CPU where it is not made

``--no-train`` times only the IS pass (compiled variants then compile only the inference
graphs). The ``%limit`` column is the fraction of the same run's limit: training img/s ÷
(peak / useful GFLOP per image), IS samples/s ÷ (peak / useful GFLOP per sample), i.e.
useful GFLOP/s ÷ the 4096³ matmul's GFLOP/s in the run's dtype.

Process-wide settings (same for every variant of a run): ``--threads`` and
``--malloc bounded|heap|glibc`` (how glibc keeps freed memory: maevae.device.set_malloc_policy).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import torch

from maevae import device as prec
from maevae.compile_backend import INDUCTOR
from maevae.config import ObjectiveConfig, RunConfig
from maevae.inference.likelihood import importance_sampled_nll
from maevae.models.build import build_model
from maevae.nn import causal
from maevae.nn import weightnorm as wn
from maevae.nn.masked import MaskedConv2d
from maevae.objectives import training_loss

IMAGE_SHAPE = (1, 28, 28)
BATCH = 100
# authors' released code on this project's AMD EPYC machine kind (2 cores, AVX-512, no AMX),
# small decoder, mean of the runs before and after maevae's in the issue "Performance III"
# (training 67.6 / 60.2 img/s, batch 100, one Adam step; IS 137.5 / 111.9 samples/s, K = 512
# on one image). No figure of the large decoder was measured on that machine kind.
REFERENCE = {"small": {"train": 63.9, "is": 124.7}}
# that issue's targets, as a fraction of the same run's limit (%limit, below)
TARGETS_PCT_LIMIT = {("train", "fp32"): 80.0, ("train", "bf16"): 70.0,
                     ("is", "fp32"): 90.0, ("is", "bf16"): 80.0}
MEMORY_TARGET_GIB = 2.0


@dataclass(frozen=True)
class Variant:
    name: str
    impl: str = "causal"
    channels_last: bool = True
    fold: bool = True
    compile: bool = False
    fused_adam: bool = True
    share_image: bool | str = "auto"  # PixelCNNDecoder.share_image
    head_in_core: bool = True  # PixelCNNDecoder.head_in_core
    freeze: bool = False  # Inductor freezing of the compiled core's inference graphs
    sleef_exp: bool = False  # plain backend="inductor" (Sleef exp), not the product's backend
    no_grad_strategy: str | None = None  # overrides causal.no_grad_strategy


VARIANTS = {
    "reference": Variant("reference", impl="masked", channels_last=False, fold=False,
                         fused_adam=False),
    "masked_cl": Variant("masked_cl", impl="masked", channels_last=True, fold=False,
                         fused_adam=False),
    "fast": Variant("fast"),
    "fast_nofold": Variant("fast_nofold", fold=False),
    "fast_share": Variant("fast_share", share_image=True),
    "compiled": Variant("compiled", compile=True),
    "compiled_noshare": Variant("compiled_noshare", compile=True, share_image=False),
    "compiled_headout": Variant("compiled_headout", compile=True, head_in_core=False),
    "compiled_frozen": Variant("compiled_frozen", compile=True, freeze=True),
    "compiled_sleef": Variant("compiled_sleef", compile=True, sleef_exp=True),
    "fast_crop": Variant("fast_crop", no_grad_strategy="crop"),
    "compiled_crop": Variant("compiled_crop", compile=True, no_grad_strategy="crop"),
    "fast_rows": Variant("fast_rows", no_grad_strategy="rows"),
    "compiled_rows": Variant("compiled_rows", compile=True, no_grad_strategy="rows"),
}


# ---------------------------------------------------------------------------------------
# timing helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _timed(fn, device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    _sync(device)
    c0, t0 = _cpu_seconds(), time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0, _cpu_seconds() - c0


def raise_recompile_limit(at_least: int = 64) -> None:
    """Let torch.compile keep ``at_least`` graphs per function (a benchmark compiles one per
    variant, dtype, grad mode and shape) instead of falling back to eager past the default."""
    import torch._dynamo.config as dynamo_config

    for name in ("recompile_limit", "cache_size_limit"):  # the name before torch 2.6
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(getattr(dynamo_config, name), at_least))
            break


SLOW_BF16_MATMUL_N = 1024  # a 4096³ bf16 matmul takes ~90 s without native bf16 kernels


def peak_matmul_n(device: torch.device, dtype: torch.dtype, n: int = 4096) -> int:
    """The matmul size :func:`matmul_peak` times: ``n``, capped at ``SLOW_BF16_MATMUL_N`` for
    bf16 where the device has no native bf16 kernels."""
    return min(n, SLOW_BF16_MATMUL_N) if dtype == torch.bfloat16 and prec.slow_bf16(device) \
        else n


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 4096, reps: int = 3) -> float:
    """GFLOP/s of an n×n×n matmul (best of ``reps`` after a warm-up), n by
    :func:`peak_matmul_n`."""
    n = peak_matmul_n(device, dtype, n)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b
    best = min(_timed(lambda: a @ b, device)[0] for _ in range(reps))
    return 2 * n ** 3 / best / 1e9


def dtypes_to_run(choice: str, device: torch.device) -> list[str]:
    """``--dtype fp32|bf16|both`` as a list. ``both`` leaves bf16 out, with a line on stderr,
    where the device has no native bf16 kernels (``maevae.device.slow_bf16``): there it takes
    hours and times a fallback, not maevae; ``--dtype bf16`` still times it."""
    if choice != "both":
        return [choice]
    why = prec.slow_bf16(device)
    if why is not None:
        print(f"# bf16 left out: {why}; pass --dtype bf16 to time it anyway", file=sys.stderr)
        return ["fp32"]
    return ["fp32", "bf16"]


def matmul_peaks(device: torch.device, dtypes: list[str], n: int = 4096) -> dict[str, float]:
    """:func:`matmul_peak` GFLOP/s of each of ``dtypes`` (``"fp32"`` / ``"bf16"``)."""
    return {d: matmul_peak(device, torch.bfloat16 if d == "bf16" else torch.float32, n)
            for d in dtypes}


# ---------------------------------------------------------------------------------------
# model, data, steps
def make_model(decoder: str, device: torch.device, seed: int, init_batch: int = BATCH):
    """Model with DDI on the first ``init_batch`` images of a random binary batch."""
    torch.manual_seed(seed)
    cfg = RunConfig()
    cfg.model.decoder.mode = decoder
    model = build_model(cfg.model, IMAGE_SHAPE).to(device)
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(BATCH, *IMAGE_SHAPE, generator=g) < 0.5).float().to(device)
    with causal.use_impl("masked"):
        model.initialize(x[:init_batch])
    return model, x


def cpu_eval_model(seed: int, threads: int = 0):
    """The small-decoder model of :func:`make_model` in eval mode on the CPU, with the
    product's allocator policy (``bounded``) and ``threads`` threads (0: PyTorch's default);
    returns (model, its random binary batch, the device)."""
    if threads:
        torch.set_num_threads(threads)
    prec.set_malloc_policy("bounded")
    device = torch.device("cpu")
    model, x = make_model("small", device, seed)
    return model.eval(), x, device


def core_chunk_input(model, x: torch.Tensor, chunk: int, seed: int) -> torch.Tensor:
    """The PixelCNN core's input for one IS chunk: the first image of ``x`` repeated
    ``chunk`` times beside the z feature maps of ``chunk`` normal z (seeded), channels-last,
    in the dtype of the autocast around the call; [chunk, 1 + z_maps, H, W]."""
    dec = model.decoder
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(chunk, dec.z_linear.in_features, generator=g).to(x.device)
    inp = torch.cat([x[:1].expand(chunk, -1, -1, -1), dec.z_features(z)], 1)
    return inp.contiguous(memory_format=torch.channels_last)  # [S, 1+4, 28, 28]


def add_core_pass_args(p, rounds: int) -> None:
    """The options of a script that times forms of the core on one IS chunk
    (``onednn_graph.py``, ``inductor_options.py``): dtype, chunk, rounds, threads, seed."""
    p.add_argument("--dtype", choices=["fp32", "bf16", "both"], default="both")
    p.add_argument("--chunk", type=int, default=128, help="samples per pass (eval.nll_chunk)")
    p.add_argument("--rounds", type=int, default=rounds, help="timed rounds (after two warm-ups)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)


def core_pass_setup(args, title: str):
    """For a script of :func:`add_core_pass_args`: the eval model with weight norm folded,
    its batch, the device and the JSON skeleton; prints the header line, ``title`` first."""
    model, x, device = cpu_eval_model(args.seed, args.threads)
    wn.fold_for_eval(model)
    out: dict = {"machine": machine_info(device), "args": vars(args), "runs": {}}
    info = out["machine"]
    print(f"# {title}  {info['date']}  {info['cpu']} ({info['cpu_cores']} cores), "
          f"torch {info['torch']}, {info['threads']} threads; "
          f"one pass = {args.chunk} samples of one image")
    return model, x, device, out


def interleaved_medians(fns: dict, inp: torch.Tensor, rounds: int, device: torch.device,
                        warmup: int = 2) -> dict[str, float]:
    """Median wall seconds of ``fn(inp)`` for each of ``fns``, timed round by round (every
    function once per round, in order) after ``warmup`` untimed rounds."""
    times: dict[str, list[float]] = {n: [] for n in fns}
    for r in range(rounds + warmup):
        for name, fn in fns.items():
            t, _ = _timed(lambda fn=fn: fn(inp), device)
            if r >= warmup:
                times[name].append(t)
    return {n: statistics.median(ts) for n, ts in times.items()}


@contextlib.contextmanager
def _no_grad_strategy(name: str | None):
    """Make ``causal.no_grad_strategy`` (the choice without gradients) answer ``name``."""
    if name is None:
        yield
        return
    chosen = causal.no_grad_strategy
    causal.no_grad_strategy = lambda x, weight: name
    try:
        yield
    finally:
        causal.no_grad_strategy = chosen


def compiled_core(core: torch.nn.Module, freeze: bool, sleef_exp: bool) -> torch.nn.Module:
    """``core`` compiled as the product compiles it (``maevae.device.compile_decoder``'s
    backend), or with ``backend="inductor"`` (``sleef_exp``), or with Inductor freezing."""
    if freeze:
        return torch.compile(core, options={"freezing": True})
    return torch.compile(core) if sleef_exp else torch.compile(core, backend=INDUCTOR)


def variant_core(v: Variant, what: str, eager_core: torch.nn.Module,
                 cache: dict) -> torch.nn.Module:
    """The core variant ``v`` runs for ``what`` ("train" or "is"): ``eager_core``, or its
    compiled form, kept in ``cache`` by (freezing, Sleef exp) and compiled on first use."""
    if not v.compile:
        return eager_core
    key = (v.freeze and what == "is", v.sleef_exp)
    if key not in cache:
        cache[key] = compiled_core(eager_core, *key)
    return cache[key]


def set_decoder_variant(decoder, v: Variant | None) -> None:
    """The decoder's switches as variant ``v`` sets them (``None``: the product's defaults)."""
    decoder.share_image = "auto" if v is None else v.share_image
    decoder.head_in_core = True if v is None else v.head_in_core


@contextlib.contextmanager
def variant_settings(v: Variant):
    with causal.use_config(impl=v.impl, channels_last=v.channels_last), \
            _no_grad_strategy(v.no_grad_strategy):
        yield


class Trainer:
    """One Adam step as specified (no EMA, constant LR); ``fused``: the fused Adam kernel
    (what maevae's trainer uses) or the per-parameter loop (the authors' code)."""

    def __init__(self, model, x, dtype: str, objective: ObjectiveConfig):
        self.model, self.x, self.dtype, self.objective = model, x, dtype, objective
        self.opts = {f: torch.optim.Adam(model.parameters(), lr=1e-3, fused=f or None)
                     for f in (False, True)}
        self.opt = self.opts[False]
        self.dims = x[0].numel()

    def use_fused(self, fused: bool) -> None:
        self.opt = self.opts[fused]

    def step(self) -> None:
        model = self.model
        model.train()
        with prec.autocast_context(self.x.device, self.dtype):
            t = model.terms(self.x, 1)
        lt = training_loss(t.recon.float(), t.kl.float(), t.mu.float(), t.logvar.float(),
                      self.objective, self.dims)
        self.opt.zero_grad(set_to_none=True)
        lt.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        self.opt.step()


def is_pass(model, x1, k: int, chunk: int, dtype: str, fold: bool, seed: int = 1):
    g = torch.Generator(device=x1.device).manual_seed(seed)
    model.eval()
    ctx = wn.folded(model) if fold else contextlib.nullcontext()
    with ctx:
        res = importance_sampled_nll(model, x1, k, chunk, g, prec.autocast_dtype(dtype))
    model.train()
    return res


# ---------------------------------------------------------------------------------------
# FLOP counting
class _MaskedWaste:
    """Forward hooks on MaskedConv2d layers: multiplies by masked-out weights (MACs)."""

    def __init__(self, model):
        self.macs = 0
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules()
                        if isinstance(m, MaskedConv2d)]

    def _hook(self, module, inputs, output):
        x = inputs[0]
        zeros = int((module.mask == 0).sum())  # over [out, in, k, k]
        macs = x.shape[0] * output.shape[-2] * output.shape[-1] * zeros
        grads = 0  # backward: one conv-sized product per gradient it computes
        if torch.is_grad_enabled():
            grads = int(x.requires_grad) + int(module.v.requires_grad)
        self.macs += macs * (1 + grads)

    def close(self):
        for h in self.handles:
            h.remove()


def count_flops(fn, model) -> tuple[float, float]:
    """(dense FLOPs, useful FLOPs) of ``fn()`` on the masked reference convs."""
    from torch.utils.flop_counter import FlopCounterMode

    waste = _MaskedWaste(model)
    try:
        with causal.use_impl("masked"), FlopCounterMode(display=False) as counter:
            fn()
    finally:
        waste.close()
    dense = float(counter.get_total_flops())
    return dense, dense - 2.0 * waste.macs


# ---------------------------------------------------------------------------------------
# memory probe (K = 4096) in a fresh process so that earlier peaks do not hide it
def _max_rss_bytes() -> int:
    """Peak resident memory of this process (Linux: VmHWM, which, unlike ``ru_maxrss``, does
    not inherit the parent's peak across fork + exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def memory_probe(args) -> dict:
    device = torch.device(args.device)
    model, x = make_model(args.decoder, device, args.seed, init_batch=8)  # small DDI peak
    v = VARIANTS[args.variants.split(",")[-1]]
    x1 = x[:1]
    with variant_settings(v):
        is_pass(model, x1, 8, 8, args.dtype, v.fold)  # warm-up at a tiny size
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        else:
            base = _max_rss_bytes()
        wall, _ = _timed(lambda: is_pass(model, x1, args.k_mem, args.chunk, args.dtype, v.fold),
                         device)
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device)
        else:
            peak = _max_rss_bytes()
    return {"variant": v.name, "k": args.k_mem, "chunk": args.chunk,
            "peak_delta_gib": max(peak - base, 0) / 2**30, "peak_gib": peak / 2**30,
            "method": "cuda.max_memory_allocated" if device.type == "cuda"
            else "peak RSS (VmHWM) of a fresh process", "wall_s": wall,
            "samples_per_s": args.k_mem / wall}


def run_memory_probe(args, decoder: str, dtype: str, variant: str) -> dict:
    if args.device == "cuda":  # same process is fine: allocator statistics are exact
        sub = argparse.Namespace(**{**vars(args), "decoder": decoder, "dtype": dtype,
                                    "variants": variant})
        return memory_probe(sub)
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-probe", "--device", args.device,
           "--decoder", decoder, "--dtype", dtype, "--variants", variant,
           "--k-mem", str(args.k_mem), "--chunk", str(args.chunk), "--seed", str(args.seed),
           "--malloc", args.malloc]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------
def machine_info(device: torch.device) -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    info = {"cpu": model, "cpu_cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
            "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    if device.type == "cpu":
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    else:
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _median(xs):
    return statistics.median(xs) if xs else float("nan")


def bench_one(args, decoder: str, dtype: str, variants: list[Variant], device,
              peaks: dict) -> dict:
    """One (decoder, dtype): FLOPs, the variants' rates (interleaved), NLLs, memory.
    ``peaks``: the run's matmul GFLOP/s by dtype (``{"fp32_gflop_s": …, "bf16_gflop_s": …}``)."""
    model, x = make_model(decoder, device, args.seed)
    objective = ObjectiveConfig(eta=1.0, gamma=0.5)
    trainer = Trainer(model, x, dtype, objective)
    x1 = x[:1]
    # every timed step starts from the DDI weights: 4+ steps on random data with eta = 1
    # can diverge (loss NaN), and NaN arithmetic would be timed then
    # (state-dict tensors share storage with the parameters; the compiled core renames keys)
    initial = [(v, v.clone()) for v in model.state_dict().values()]

    def reset() -> None:
        with torch.no_grad():
            for v, v0 in initial:
                v.copy_(v0)

    eager_core = model.decoder.core
    compiled_cores: dict[tuple, torch.nn.Module] = {}  # (freezing, sleef) -> compiled core
    out: dict = {"decoder": decoder, "dtype": dtype, "variants": {}}

    # FLOPs (masked reference): one training step, and one IS pass of K samples
    dense_t, useful_t = count_flops(trainer.step, model)
    dense_i, useful_i = count_flops(lambda: is_pass(model, x1, args.k, args.chunk, "fp32",
                                                    False), model)
    out["flops"] = {"train_dense_gflop_per_img": dense_t / BATCH / 1e9,
                    "train_useful_gflop_per_img": useful_t / BATCH / 1e9,
                    "is_dense_gflop_per_sample": dense_i / args.k / 1e9,
                    "is_useful_gflop_per_sample": useful_i / args.k / 1e9}

    def use(v: Variant, what: str = "is"):
        trainer.use_fused(v.fused_adam)
        set_decoder_variant(model.decoder, v)
        model.decoder.core = variant_core(v, what, eager_core, compiled_cores)

    # compile warm-ups (timed: compile time counts against short runs)
    for v in variants:
        if v.compile:
            with variant_settings(v):
                reset()
                use(v, "train")
                w1 = _timed(trainer.step, device)[0] if args.train else float("nan")
                use(v, "is")
                w2, _ = _timed(lambda v=v: is_pass(model, x1, args.k, args.chunk, dtype, v.fold),
                               device)
            out["variants"].setdefault(v.name, {})["compile_s"] = {"train_first_step": w1,
                                                                  "is_first_pass": w2}

    times: dict = {(v.name, w): [] for v in variants for w in ("train", "is")}
    nlls: dict[str, float] = {}  # NLL of each variant's first timed IS pass (same z samples)
    for r in range(args.steps + 1):  # round 0 is a warm-up
        for v in variants:
            if not args.train:
                break
            use(v, "train")
            with variant_settings(v):
                reset()
                t = _timed(trainer.step, device)
                if r:
                    times[(v.name, "train")].append(t)
        reset()  # every IS pass on the same (DDI) weights: their NLLs are comparable
        for v in variants:
            if r > args.is_rounds:
                continue
            use(v, "is")
            with variant_settings(v):
                res = []
                t = _timed(lambda v=v, res=res: res.append(is_pass(model, x1, args.k, args.chunk,
                                                                  dtype, v.fold)), device)
                if r:
                    times[(v.name, "is")].append(t)
                    nlls.setdefault(v.name, float(res[0].nll[0]))
    model.decoder.core = eager_core
    set_decoder_variant(model.decoder, None)

    threads = torch.get_num_threads()
    ref = REFERENCE.get(decoder, {})
    peak = peaks[f"{dtype}_gflop_s"]
    useful = {"train": out["flops"]["train_useful_gflop_per_img"],
              "is": out["flops"]["is_useful_gflop_per_sample"]}
    for v in variants:
        entry = out["variants"].setdefault(v.name, {})
        entry["config"] = asdict(v)
        if v.name in nlls:
            entry["is_nll"] = nlls[v.name]
        for what, units in (("train", BATCH), ("is", args.k)):
            ts = times[(v.name, what)]
            if not ts:
                continue
            wall = _median([a for a, _ in ts])
            cpu = _median([b for _, b in ts])
            rate = units / wall
            pct_limit = 100 * rate * useful[what] / peak
            e = {"rounds": len(ts), "wall_s_median": wall, "wall_s_min": min(a for a, _ in ts),
                 "per_s": rate, "useful_gflop_s": rate * useful[what],
                 "vs_reference": rate / ref[what] if what in ref else None,
                 "pct_limit": pct_limit,
                 "vs_target": pct_limit / TARGETS_PCT_LIMIT[(what, dtype)]}
            if device.type == "cpu":
                e["cpu_s_median"] = cpu
                e["cpu_normalised_per_s"] = units / (cpu / threads)
            entry[what] = e

    # bf16 vs fp32 NLL on the same image and the same z samples (fast variant if present);
    # skipped where bf16 has no native kernels unless bf16 was asked for (it takes minutes)
    v = next((v for v in variants if v.name == "fast"),
             next((v for v in variants if not v.compile and v.impl == "causal"), variants[0]))
    if args.dtype == "bf16" or prec.slow_bf16(device) is None:
        reset()
        with variant_settings(v):
            r32 = is_pass(model, x1, args.k, args.chunk, "fp32", v.fold)
            r16 = is_pass(model, x1, args.k, args.chunk, "bf16", v.fold)
        out["nll"] = {"variant": v.name, "fp32": float(r32.nll[0]), "bf16": float(r16.nll[0]),
                      "abs_diff": abs(float(r16.nll[0] - r32.nll[0])),
                      "mc_stderr": float(r32.nll_mc_stderr[0])}
    if args.k_mem:
        out["memory"] = run_memory_probe(args, decoder, dtype, v.name)
    return out


# ---------------------------------------------------------------------------------------
def print_table(result: dict) -> None:
    m = result["machine"]
    print(f"# throughput  {m['date']}  {m['cpu']} ({m['cpu_cores']} cores), "
          f"torch {m['torch']}, {m['threads']} threads, device {result['device']}")
    print(f"# loadavg at start {m['loadavg_start']}, at end {result.get('loadavg_end')}")
    p = result["peak"]
    print("# peak matmul: " + ", ".join(
        f"{d} {p[f'{d}_gflop_s']:.1f} GFLOP/s ({p.get(f'{d}_matmul_n', p.get('matmul_n'))}^3)"
        for d in ("fp32", "bf16") if f"{d}_gflop_s" in p))
    if "bf16_matmul_n" in p:
        print("# bf16 has no native kernels here: its peak is PyTorch's fallback matmul, so its "
              "%limit and vs tgt say nothing about this machine")
    for run in result["runs"]:
        f = run["flops"]
        print(f"\n## decoder={run['decoder']} dtype={run['dtype']}   train: "
              f"{f['train_dense_gflop_per_img']:.3f} GFLOP/img dense, "
              f"{f['train_useful_gflop_per_img']:.3f} useful; IS: "
              f"{f['is_dense_gflop_per_sample']:.3f} GFLOP/sample dense, "
              f"{f['is_useful_gflop_per_sample']:.3f} useful")
        hdr = (f"{'variant':12s} {'what':5s} {'per s':>8s} {'cpu-norm':>9s} {'GFLOP/s':>8s} "
               f"{'%limit':>6s} {'vs ref':>7s} {'vs tgt':>7s} {'wall med':>9s} {'cpu med':>8s}")
        print(hdr)
        for name, e in run["variants"].items():
            for what in ("train", "is"):
                if what not in e:
                    continue
                d = e[what]
                cn = d.get("cpu_normalised_per_s")
                ref = d["vs_reference"]
                tgt = d["vs_target"]
                print(f"{name:12s} {what:5s} {d['per_s']:8.1f} "
                      f"{(f'{cn:9.1f}' if cn else '        -')} {d['useful_gflop_s']:8.1f} "
                      f"{d['pct_limit']:6.1f} "
                      f"{(f'{ref:7.2f}' if ref else '      -')} "
                      f"{(f'{tgt:7.2f}' if tgt else '      -')} "
                      f"{d['wall_s_median']:9.3f} {d.get('cpu_s_median', float('nan')):8.3f}")
            if "is_nll" in e:
                print(f"{name:12s} IS NLL {e['is_nll']:.5f} (same weights and z for every "
                      f"variant of this dtype)")
            if "compile_s" in e:
                c = e["compile_s"]
                print(f"{name:12s} compile+first step {c['train_first_step']:.1f} s, "
                      f"compile+first IS pass {c['is_first_pass']:.1f} s")
        n = run.get("nll")
        if n is None:
            print("NLL fp32 vs bf16: not checked (no native bf16 kernels; --dtype bf16 checks it)")
        else:
            print(f"NLL (K={result['k']}, {n['variant']}): fp32 {n['fp32']:.4f}  "
                  f"bf16 {n['bf16']:.4f}  |diff| {n['abs_diff']:.4f} nats "
                  f"(MC stderr {n['mc_stderr']:.3f})")
        if "memory" in run:
            mem = run["memory"]
            if "error" in mem:
                print(f"memory probe failed: {mem['error']}")
            else:
                print(f"K={mem['k']} (chunk {mem['chunk']}, {mem['variant']}): peak growth "
                      f"{mem['peak_delta_gib']:.2f} GiB, peak {mem['peak_gib']:.2f} GiB "
                      f"[{mem['method']}], {mem['samples_per_s']:.0f} samples/s "
                      f"(target <= {MEMORY_TARGET_GIB} GiB)")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=["fp32", "bf16", "both"], default="both")
    p.add_argument("--decoder", choices=["small", "large", "both"], default="small")
    p.add_argument("--steps", type=int, default=5, help="timed training rounds per variant")
    p.add_argument("--is-rounds", type=int, default=3, help="timed IS rounds per variant")
    p.add_argument("--k", type=int, default=512, help="importance samples (one image)")
    p.add_argument("--chunk", type=int, default=128,
                   help="samples per decoder pass (128: eval.nll_chunk's default)")
    p.add_argument("--k-mem", type=int, default=4096, help="K of the memory probe; 0 skips it")
    p.add_argument("--variants", default="reference,fast")
    p.add_argument("--compile", action="store_true", help="add the torch.compile variant")
    p.add_argument("--no-train", dest="train", action="store_false",
                   help="time only the IS pass")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--malloc", choices=list(prec.MALLOC_POLICIES), default="bounded",
                   help="glibc allocator policy (maevae.device.set_malloc_policy; default "
                        "bounded, the product's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.compile and "compiled" not in args.variants.split(","):
        args.variants += ",compiled"
    for name in args.variants.split(","):
        if name not in VARIANTS:
            p.error(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cpu":
        prec.set_malloc_policy(args.malloc)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA GPU is available")
    if args.memory_probe:
        print(json.dumps(memory_probe(args)))
        return {}
    raise_recompile_limit()  # variants x dtypes x grad modes
    device = torch.device(args.device)
    variants = [VARIANTS[n] for n in args.variants.split(",")]
    result = {"device": args.device, "k": args.k, "chunk": args.chunk, "steps": args.steps,
              "batch": BATCH, "malloc": args.malloc, "machine": machine_info(device),
              "argv": sys.argv[1:] if argv is None else list(argv)}
    n = 8192 if device.type == "cuda" else 4096
    dtypes = dtypes_to_run(args.dtype, device)
    result["peak"] = {"matmul_n": n, **{f"{d}_gflop_s": v
                                        for d, v in matmul_peaks(device, dtypes, n).items()}}
    if "bf16" in dtypes and peak_matmul_n(device, torch.bfloat16, n) != n:
        result["peak"]["bf16_matmul_n"] = peak_matmul_n(device, torch.bfloat16, n)
    decoders = ["small", "large"] if args.decoder == "both" else [args.decoder]
    result["runs"] = []
    for decoder in decoders:
        for dtype in dtypes:
            result["runs"].append(bench_one(args, decoder, dtype, variants, device,
                                            result["peak"]))
            if not args.json:
                print(f"... done decoder={decoder} dtype={dtype}", file=sys.stderr, flush=True)
    result["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return result


if __name__ == "__main__":
    main()
