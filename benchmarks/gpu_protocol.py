"""The GPU protocol: one time-boxed call that measures the paper's MNIST model on a lent GPU.

    python benchmarks/gpu_protocol.py [--device cuda|cpu] [--data-root DIR] [--compile] [--tf32]
        [--precisions fp32,bf16] [--epoch-images 58000] [--warmup-steps 3] [--is-images 200]
        [--k 4096] [--chunk 8192] [--time-budget 480] [--json] [--out PATH] [--threads N]

Preset ``mnist/mae_eta1.0_gamma0.5`` (small PixelCNN decoder) on real MNIST when
``--data-root`` holds it, else on random binary images of the same shape (the output says so).

1. ``train <precision>``: a fresh ``Trainer`` (DDI, EMA, Adam; ``DistInfo()``: one process),
   ``--warmup-steps`` steps (compile time, reported apart), then ``--epoch-images`` / 100
   steps of ``Trainer.train_step`` (dynamic binarisation, ``compute_loss``, backward, clip 5,
   Adam, EMA), projected to the 58,000-image epoch: target <= 4 s on an H100.
2. ``IS <precision>``: the product's IS-NLL (``importance_sampled_batch`` over
   ``iterate_batches``, the runner's seeding, no folding), K samples per image on
   ``--is-images`` test images, on the ``train fp32`` model (DDI only if that did not run),
   projected to 10,000 images at K = 4096: target <= 5 minutes. fp32 and bf16 draw the same z.

Peak memory per phase: CUDA ``max_memory_allocated``, CPU peak RSS (reset per phase). Each
phase gets an equal share of the time left and stops at its deadline (after at least one timed
step / batch); SIGALRM ends a phase stuck past the budget. The JSON is rewritten per phase.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maevae import device as prec
from maevae.config import RunConfig, load_config
from maevae.data import ImageSplits, load_dataset
from maevae.data.transforms import evaluation_inputs
from maevae.errors import MaevaeError
from maevae.inference.likelihood import importance_sampled_batch, iterate_batches
from maevae.runs.directory import RunDir
from maevae.train.distributed import DistInfo
from maevae.train.trainer import Trainer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import raise_recompile_limit  # noqa: E402  (a sibling script)

PRESET = "mnist/mae_eta1.0_gamma0.5"
EPOCH_TARGET_S, FULL_EPOCH_STEPS = 4.0, 580  # one 58,000-image epoch (batch 100), H100
IS_TARGET_S, TEST_IMAGES, PAPER_K = 300.0, 10_000, 4096  # the test set at K = 4096, H100


class BudgetExceeded(Exception):
    """Raised by SIGALRM when the whole time budget is spent."""


def _alarm(signum: int, frame: Any) -> None:
    raise BudgetExceeded("time budget spent")


class Protocol:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.device, self.t0 = args, torch.device(args.device), time.perf_counter()
        self.reserve = min(10.0, 0.05 * args.time_budget)  # for printing and saving
        self.spent = False  # the alarm fired: skip what is left
        self.result: dict[str, Any] = {"argv": sys.argv[1:], "preset": PRESET, "phases": {}}

    # ------------------------------------------------------------------ time, memory, output
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def timed(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        self.sync()
        s = time.perf_counter()
        out = fn()
        self.sync()
        return time.perf_counter() - s, out

    def mem_reset(self) -> None:
        self.sync()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            with contextlib.suppress(OSError):
                Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux)

    def mem_peak(self) -> dict[str, Any]:
        self.sync()
        if self.device.type == "cuda":
            return {"peak_gib": torch.cuda.max_memory_allocated(self.device) / 2**30,
                    "method": "torch.cuda.max_memory_allocated"}
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return {"peak_gib": int(line.split()[1]) / 2**20, "method": "peak RSS"}
        return {"peak_gib": None, "method": "unavailable"}

    def log(self, msg: str) -> None:
        print(f"[{self.elapsed():6.1f} s] {msg}", file=sys.stderr, flush=True)

    def save(self) -> None:
        self.result["elapsed_s"] = round(self.elapsed(), 2)
        if self.args.out:
            path = Path(self.args.out)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text(json.dumps(self.result, indent=1))
                os.replace(tmp, path)
            except OSError as e:
                self.log(f"cannot write {path}: {e.strerror or e}")
                self.args.out = None

    # ------------------------------------------------------------------ set-up
    def machine(self) -> dict[str, Any]:
        a = self.args
        info: dict[str, Any] = {"device": str(self.device), "torch": torch.__version__,
                                "python": platform.python_version(), "cpu_cores": os.cpu_count(),
                                "threads": torch.get_num_threads(), "precisions": a.precisions,
                                "compile": a.compile, "tf32": a.tf32}
        if self.device.type != "cuda":
            return {**info, "name": platform.processor() or platform.machine(), "cuda": None,
                    "fp32_math": "ieee (CPU)"}
        p = torch.cuda.get_device_properties(self.device)
        mm, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
        math = (f"matmul {mm.fp32_precision}, conv {cudnn.conv.fp32_precision}"
                if hasattr(mm, "fp32_precision") and hasattr(cudnn, "conv")
                else f"matmul allow_tf32={mm.allow_tf32}, conv allow_tf32={cudnn.allow_tf32}")
        return {**info, "name": p.name, "cuda": torch.version.cuda, "cudnn": cudnn.version(),
                "capability": f"{p.major}.{p.minor}", "gib": round(p.total_memory / 2**30, 1),
                "bf16_supported": torch.cuda.is_bf16_supported(), "fp32_math": math}

    def data(self, cfg: RunConfig) -> ImageSplits:
        a, why = self.args, "no --data-root"
        if a.data_root:
            try:
                d = load_dataset("mnist", a.data_root, split=cfg.data.split, seed=cfg.seed,
                                 download=False)
                self.result["data"] = f"real MNIST, {d.summary()} ({a.data_root})"
                return d
            except (MaevaeError, OSError) as e:
                why = f"--data-root {a.data_root}: {str(e).splitlines()[0]}"
        rng = np.random.default_rng(a.seed)

        def images(n: int) -> np.ndarray:
            return (rng.random((n, 1, 28, 28)) < 0.5).astype(np.uint8) * 255

        self.result["data"] = f"RANDOM binary 1x28x28 images, not MNIST ({why})"
        return ImageSplits("random", images(max(a.epoch_images, 500)), None, images(2000), None,
                           images(max(a.is_images, 1)), None)

    def trainer(self, cfg: RunConfig, data: ImageSplits, precision: str, tmp: str) -> Trainer:
        cfg = copy.deepcopy(cfg)
        cfg.train.precision = precision
        t = Trainer(cfg, data, RunDir(Path(tmp) / precision), self.device, dist=DistInfo(),
                    progress=False, log=lambda *a, **k: None)
        t.initialize()  # DDI on 500 training images, EMA, Adam
        if self.args.compile:
            prec.compile_decoder(t.model)
        return t

    # ------------------------------------------------------------------ phases
    def train_phase(self, make: Callable[[], Trainer], deadline: float) -> dict[str, Any]:
        a = self.args
        init, t = self.timed(make)
        bs = t.cfg.train.batch_size
        n_steps, perm = a.epoch_images // bs, t._batch_indices(0)  # the epoch's data order
        batches = [perm[i * bs:(i + 1) * bs] for i in range(len(perm) // bs)]
        warm = [self.timed(lambda i=i: t.train_step(batches[i % len(batches)]))[0]
                for i in range(a.warmup_steps)]  # compile / autotuning / allocator warm-up
        done = skipped = 0
        self.sync()
        s = time.perf_counter()
        while done < n_steps and (done == 0 or time.perf_counter() < deadline):
            skipped += t.train_step(batches[done]) is None  # syncs (loss and norm checks)
            done += 1
        self.sync()
        per_step = (time.perf_counter() - s) / done
        return {"steps_timed": done, "steps_asked": n_steps, "s_per_step": per_step,
                "img_per_s": bs / per_step, "full_epoch_s": per_step * FULL_EPOCH_STEPS,
                "target_full_epoch_s": EPOCH_TARGET_S, "warmup_steps_s": warm,
                "init_s": init, "skipped_nonfinite": skipped, "_trainer": t}

    def is_phase(self, model: torch.nn.Module, x: torch.Tensor, precision: str,
                 deadline: float) -> dict[str, Any]:
        a, g = self.args, torch.Generator(device=self.device)
        dtype = prec.autocast_dtype(precision)  # type: ignore[arg-type]
        slices = list(iterate_batches(x, a.k, a.chunk))

        def one(sl: slice) -> tuple[torch.Tensor, torch.Tensor]:
            g.manual_seed(a.seed * 7919 + sl.start)  # as the runner: tied to the position
            r = importance_sampled_batch(model, x[sl], a.k, a.chunk, g, dtype)
            return r.nll.double().cpu(), r.nll_mc_stderr.double().cpu()

        model.eval()
        try:
            warm, first = self.timed(lambda: one(slices[0]))  # compile / autotuning
            parts, n = [first], 0
            self.sync()
            s = time.perf_counter()
            for sl in slices[1:] or slices[:1]:  # one slice only: time it again
                if n and time.perf_counter() > deadline:
                    break
                parts.append(one(sl))
                n += sl.stop - sl.start
            wall = time.perf_counter() - s
        finally:
            model.train()
        parts = parts[1:] if len(slices) == 1 else parts
        nll, rate = torch.cat([p[0] for p in parts]), n * a.k / wall
        return {"images": len(nll), "images_asked": len(x), "images_timed": n, "k": a.k,
                "chunk": a.chunk, "warmup_s": warm, "samples_per_s": rate,
                "test_set_s": TEST_IMAGES * PAPER_K / rate, "target_test_set_s": IS_TARGET_S,
                "mean_nll": float(nll.mean()),
                "mean_mc_stderr": float(torch.cat([p[1] for p in parts]).mean()), "_nll": nll}

    def run_phase(self, name: str, fn: Callable[[float], dict[str, Any]],
                  phases_left: int) -> dict[str, Any] | None:
        """One phase with an equal share of the budget left; failures are recorded, not raised."""
        ph, left = self.result["phases"], self.args.time_budget - self.reserve - self.elapsed()
        res = None
        if left <= 0 or self.spent:
            ph[name] = {"skipped": "time budget spent"}
        else:
            self.mem_reset()
            try:
                res = fn(time.perf_counter() + left / max(phases_left, 1))
                ph[name] = {k: v for k, v in res.items() if not k.startswith("_")}
                ph[name].update(memory=self.mem_peak(), end_s=round(self.elapsed(), 1))
            except BudgetExceeded:
                self.spent, ph[name] = True, {"skipped": "stopped by the time-budget alarm"}
            except Exception as e:  # one failing phase must not lose the others' results
                ph[name] = {"error": f"{type(e).__name__}: {(str(e) or '-').splitlines()[0]}"}
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
        self.log(f"{name}: {summary(name, ph[name])}")
        self.save()
        return res if "memory" in ph[name] else None  # None: skipped or failed

    def run(self) -> dict[str, Any]:
        a = self.args
        self.result["machine"] = self.machine()
        self.log("machine: " + ", ".join(f"{k}={v}" for k, v in self.result["machine"].items()))
        cfg = load_config(PRESET)
        data = self.data(cfg)
        self.log(f"data: {self.result['data']}")
        if a.epoch_images > len(data.train_x):
            raise MaevaeError(f"--epoch-images {a.epoch_images} exceeds the "
                              f"{len(data.train_x)} training images")
        x_test = torch.zeros(0)
        if a.is_images:  # the runner's fixed binarised copies (copy-major: copy 0 first)
            x_test = evaluation_inputs(data.test_x[:a.is_images], cfg.data, cfg.seed + 2)[0]
            x_test = x_test[:a.is_images].to(self.device)
        left = len(a.precisions) * ((a.epoch_images > 0) + (a.is_images > 0))
        model, note, nlls = None, "", {}
        with tempfile.TemporaryDirectory() as tmp:
            for p in a.precisions if a.epoch_images else []:
                res = self.run_phase(f"train {p}", lambda d, p=p: self.train_phase(
                    lambda: self.trainer(cfg, data, p, tmp), d), left)
                left -= 1
                if res is not None and p == "fp32":
                    model = res["_trainer"].model
                    n = len(res["warmup_steps_s"]) + res["steps_timed"]
                    note = f"DDI + {n} fp32 training steps (raw weights, not the EMA)"
            if a.is_images and model is None:
                res = self.run_phase("DDI model", lambda d: {
                    "_model": self.trainer(cfg, data, "fp32", tmp).model}, left + 1)
                model, note = res and res["_model"], "DDI-initialised (no fp32 training ran)"
            for p in a.precisions if a.is_images and model is not None else []:
                res = self.run_phase(f"IS {p}", lambda d, p=p: self.is_phase(
                    model, x_test, p, d), left)
                left -= 1
                if res is not None:
                    nlls[p] = res["_nll"]
                    self.result["phases"][f"IS {p}"]["model"] = note
        if len(nlls) == 2:
            n = min(len(v) for v in nlls.values())
            f, b = nlls["fp32"][:n], nlls["bf16"][:n]
            self.result["nll_fp32_vs_bf16"] = {
                "images": n, "fp32": float(f.mean()), "bf16": float(b.mean()),
                "mean_diff_bf16_minus_fp32": float((b - f).mean()),
                "max_abs_diff": float((b - f).abs().max()), "model": note}
        return self.result


def summary(name: str, r: dict[str, Any]) -> str:
    if "skipped" in r or "error" in r:
        return "-- " + r.get("skipped", "ERROR " + r.get("error", ""))
    m = r["memory"]
    mem = f"peak {m['peak_gib']:.2f} GiB ({m['method']})" if m["peak_gib"] else ""
    if name.startswith("train"):
        return (f"{r['img_per_s']:.0f} img/s ({r['steps_timed']}/{r['steps_asked']} steps timed)"
                f" -> 58,000-image epoch {r['full_epoch_s']:.1f} s (target <= "
                f"{r['target_full_epoch_s']:.0f} s); warm-up {sum(r['warmup_steps_s']):.1f} s "
                f"({len(r['warmup_steps_s'])} steps), DDI+set-up {r['init_s']:.1f} s; {mem}")
    if name.startswith("IS "):
        return (f"K={r['k']} chunk {r['chunk']}: {r['samples_per_s']:.0f} samples/s "
                f"({r['images_timed']} images timed) -> 10,000 images at K=4096 "
                f"{r['test_set_s']:.0f} s (target <= {r['target_test_set_s']:.0f} s); warm-up "
                f"{r['warmup_s']:.1f} s; mean NLL {r['mean_nll']:.3f} on {r['images']}/"
                f"{r['images_asked']} images (MC se {r['mean_mc_stderr']:.3f}); {mem}")
    return mem


def print_table(res: dict[str, Any]) -> None:
    m = res.get("machine", {})
    print(f"# gpu_protocol  {m.get('name')}  device {m.get('device')}  torch {m.get('torch')}  "
          f"CUDA {m.get('cuda')}  dtypes {','.join(m.get('precisions', []))}  compile "
          f"{m.get('compile')}  TF32 {'on' if m.get('tf32') else 'off'} ({m.get('fp32_math')})")
    print(f"# preset {res['preset']}; data: {res.get('data')}")
    for name, r in res["phases"].items():
        print(f"{name:15s} {summary(name, r)}")
    c = res.get("nll_fp32_vs_bf16")
    if c:
        print(f"NLL on {c['images']} images ({c['model']}): fp32 {c['fp32']:.4f}  bf16 "
              f"{c['bf16']:.4f}  mean diff {c['mean_diff_bf16_minus_fp32']:+.4f}  max |diff| "
              f"{c['max_abs_diff']:.4f} nats")
    print(f"# total {res['elapsed_s']:.1f} s" + (f"; {res['stopped']}" if "stopped" in res else ""),
          flush=True)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"gpu_protocol: error: {message}", file=sys.stderr)
        sys.exit(2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = _Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"],
                   default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data-root", default=None, help="folder holding MNIST/raw (else random)")
    p.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32,bf16")
    p.add_argument("--compile", action="store_true", help="maevae.device.compile_decoder")
    p.add_argument("--tf32", action="store_true", help="allow TF32 for fp32 matmul/conv (CUDA)")
    p.add_argument("--epoch-images", type=int, default=58_000, help="0 skips training")
    p.add_argument("--warmup-steps", type=int, default=3)
    p.add_argument("--is-images", type=int, default=200, help="0 skips the IS-NLL")
    p.add_argument("--k", type=int, default=PAPER_K, help="importance samples per image")
    p.add_argument("--chunk", type=int, default=8192, help="(image, sample) pairs per pass")
    p.add_argument("--time-budget", type=float, default=480.0, help="seconds for everything")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", default=None,
                   help="JSON file (default $OUT/gpu_protocol.json when OUT is set; '' = none)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--seed", type=int, default=0, help="random data and IS samples")
    a = p.parse_args(argv)
    a.precisions = [s.strip() for s in a.precisions.split(",") if s.strip()]
    for name in ("epoch_images", "warmup_steps", "is_images", "threads", "seed"):
        if getattr(a, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(a, name)}")
    for name in ("k", "chunk", "time_budget"):
        if not getattr(a, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(a, name)}")
    if not a.precisions or any(s not in prec.PRECISIONS for s in a.precisions):
        p.error(f"--precisions {','.join(a.precisions)}: allowed fp32, bf16")
    if 0 < a.epoch_images < 100:
        p.error(f"--epoch-images {a.epoch_images}: at least one batch of 100 (or 0 to skip)")
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is available to torch here; use --device cpu")
    if a.out is None and os.environ.get("OUT"):
        a.out = str(Path(os.environ["OUT"]) / "gpu_protocol.json")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.device == "cuda":  # torch's own default: IEEE matmuls, TF32 cuDNN convolutions
        mode = "tf32" if a.tf32 else "ieee"
        if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
            torch.backends.cuda.matmul.fp32_precision = mode
            torch.backends.cudnn.conv.fp32_precision = mode
        else:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = a.tf32
    if a.compile:
        raise_recompile_limit()  # dtypes x grad modes x shapes
    proto = Protocol(a)
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(max(1, int(a.time_budget - proto.reserve / 2)))  # a phase stuck past its end
    try:
        res = proto.run()
    except MaevaeError as e:
        print(f"gpu_protocol: error: {e}", file=sys.stderr)
        return 2
    except BudgetExceeded:  # outside a phase (set-up): report what there is
        res = proto.result
        res["stopped"] = "time budget spent outside a phase"
    finally:
        signal.alarm(0)
    proto.save()
    if a.json:
        print(json.dumps(res), flush=True)
    else:
        print_table(res)
    return 1 if any("error" in r for r in res["phases"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
