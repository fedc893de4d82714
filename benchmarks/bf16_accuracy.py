"""bf16 vs fp32 importance-sampled NLL of a trained run, image by image, same z samples.

    python benchmarks/bf16_accuracy.py RUN_DIR [--data-root DIR] [--images 100] [--k 512]
                                       [--chunk 512] [--threads N] [--compile] [--json]

Loads the run's best (EMA) model and its first ``--images`` binarised test images (the
run's own test binarisation, as ``maevae eval``), then computes the IS estimate of
log p(x) with ``--k`` samples per image twice: fp32, and bf16 autocast (what
``maevae eval --precision bf16`` runs: encoder, flow prior and the decoder's output head in
fp32, the PixelCNN core in bf16). Both passes draw the same z samples (the encoder is fp32
in both, and each image's generator is seeded alike), so the difference is the precision
alone, not Monte-Carlo noise. Prints the mean NLLs, the mean signed and absolute per-image
differences, the largest one, the mean MC standard error, and both passes' samples/s.
The issue's bar: the mean NLL within 0.05 nats of fp32.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from maevae import device as prec
from maevae.data.transforms import evaluation_inputs, redraw_dynamic
from maevae.errors import MaevaeError
from maevae.inference.likelihood import importance_sampled_batch, iterate_batches
from maevae.runs.directory import RunDir
from maevae.runs.load import load_run_config, load_run_data, load_trained_model


def nll_per_image(model, x, k: int, chunk: int, dtype, seed: int) -> tuple[torch.Tensor, ...]:
    nll, se = [], []
    g = torch.Generator()
    for sl in iterate_batches(x, k, chunk):
        g.manual_seed(seed + sl.start)
        r = importance_sampled_batch(model, x[sl], k, chunk, g, dtype)
        nll.append(r.nll)
        se.append(r.nll_mc_stderr)
    return torch.cat(nll), torch.cat(se)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--data-root")
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--k", type=int, default=512)
    p.add_argument("--chunk", type=int, default=512)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="torch.compile the PixelCNN core")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.images < 1 or args.k < 1 or args.chunk < 1:
        p.error("--images, --k and --chunk must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    prec.keep_freed_memory()
    run = RunDir(args.run_dir)
    cfg = load_run_config(run)
    model, _ = load_trained_model(run, cfg, torch.device("cpu"))
    data = load_run_data(cfg, args.data_root)
    x, copies = evaluation_inputs(data.test_x, cfg.data, cfg.seed + 2)
    g = torch.Generator().manual_seed(cfg.seed + 3)
    x = redraw_dynamic(x, copies, g)[: args.images]
    if args.compile:
        prec.compile_decoder(model)
        nll_per_image(model, x[:1], args.chunk, args.chunk, None, 0)  # compile outside timing
        nll_per_image(model, x[:1], args.chunk, args.chunk, torch.bfloat16, 0)
    out: dict = {"run": str(run.path), "images": int(x.shape[0]), "k": args.k,
                 "threads": torch.get_num_threads(), "compiled": args.compile}
    res = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        t0 = time.perf_counter()
        res[name] = nll_per_image(model, x, args.k, args.chunk, dtype, cfg.seed)
        dt = time.perf_counter() - t0
        out[name] = {"mean_nll": float(res[name][0].mean()),
                     "samples_per_s": x.shape[0] * args.k / dt, "seconds": dt}
    d = res["bf16"][0] - res["fp32"][0]
    out["diff"] = {"mean_signed": float(d.mean()), "mean_abs": float(d.abs().mean()),
                   "max_abs": float(d.abs().max()),
                   "mean_mc_stderr": float(res["fp32"][1].mean())}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"run {out['run']}: {out['images']} test images, K = {args.k}, "
              f"{out['threads']} threads, compiled {args.compile}")
        for name in ("fp32", "bf16"):
            o = out[name]
            print(f"  {name}: mean NLL {o['mean_nll']:.4f} nats, {o['samples_per_s']:.0f} "
                  f"samples/s ({o['seconds']:.1f} s)")
        dd = out["diff"]
        print(f"  bf16 - fp32: mean {dd['mean_signed']:+.4f}, mean |.| {dd['mean_abs']:.4f}, "
              f"max |.| {dd['max_abs']:.4f} nats per image "
              f"(MC standard error of one image's estimate {dd['mean_mc_stderr']:.3f})")
    return out


if __name__ == "__main__":
    try:
        main()
    except MaevaeError as e:
        print(f"bf16_accuracy: error: {e}", file=sys.stderr)
        sys.exit(2)
