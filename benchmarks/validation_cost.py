"""Cost per (image, sample) of the validation / test statistics against the IS pass.

    python benchmarks/validation_cost.py [--dtype fp32|bf16|both] [--images 512]
                                         [--samples 5] [--k 512] [--chunk 128]
                                         [--rounds 3] [--compile] [--threads N]

On the paper's binary-MNIST model (small decoder, random binary data, DDI; the model of
``throughput.py``) it times, interleaved round by round (medians):

* ``stats``: :func:`maevae.statistics.batch_statistics` over ``--images`` images
  (``eval_batch`` 512, ``--samples`` posterior samples, ``chunk`` = ``eval.nll_chunk``), the
  end-of-epoch validation and the test statistics; per (image, sample);
* ``is``: :func:`maevae.inference.likelihood.importance_sampled_nll` with K samples of one
  image (the test IS-NLL pass); per sample;

and prints both rates, their ratio (stats ÷ is: 1 = validation as fast per sample as the IS
pass) and each rate as a fraction of the same run's limit (peak 4096³ matmul GFLOP/s ÷
the useful 0.368 GFLOP of one decoder sample; the encoder's work is not counted, so a
ratio below 1 is partly the encoder's cost per image, spread over ``--samples`` samples).
``--compile`` compiles the PixelCNN core for both (as ``eval.compile`` would).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from maevae import device as prec  # noqa: E402
from maevae.inference.likelihood import importance_sampled_nll  # noqa: E402
from maevae.statistics import batch_statistics  # noqa: E402
from throughput import _timed, cpu_eval_model, dtypes_to_run, matmul_peaks  # noqa: E402

USEFUL_GFLOP_PER_SAMPLE = 0.368  # small decoder, IS pass (throughput.py's FLOP count)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtype", choices=["fp32", "bf16", "both"], default="both")
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--batch", type=int, default=512, help="train.eval_batch")
    p.add_argument("--k", type=int, default=512)
    p.add_argument("--chunk", type=int, default=128, help="eval.nll_chunk")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds (after one warm-up)")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    model, _, device = cpu_eval_model(args.seed, args.threads)
    g = torch.Generator().manual_seed(args.seed + 1)
    x = (torch.rand(args.images, 1, 28, 28, generator=g) < 0.5).float()
    if args.compile:
        prec.compile_decoder(model)
    dtypes = dtypes_to_run(args.dtype, device)
    peaks = matmul_peaks(device, dtypes)
    out: dict = {"peak_gflop_s": peaks, "args": vars(args), "runs": {}}

    def stats(dtype):
        return batch_statistics(model, x, args.batch, args.samples,
                                torch.Generator().manual_seed(2), dtype, chunk=args.chunk)

    def is_pass(dtype):
        return importance_sampled_nll(model, x[:1], args.k, args.chunk,
                                      torch.Generator().manual_seed(3),
                                      prec.autocast_dtype(dtype))

    times = {(d, w): [] for d in dtypes for w in ("stats", "is")}
    for r in range(args.rounds + 1):
        for d in dtypes:
            for what, fn in (("stats", stats), ("is", is_pass)):
                t, _ = _timed(lambda fn=fn, d=d: fn(d), device)
                if r:
                    times[(d, what)].append(t)
    peak = " / ".join(f"{d} {v:.0f}" for d, v in peaks.items())
    print(f"# validation vs IS cost per sample, {torch.get_num_threads()} threads, "
          f"loadavg {os.getloadavg()}, peak {peak} GFLOP/s; stats: {args.images} images x "
          f"{args.samples} samples (batch {args.batch}, chunk {args.chunk}); IS: K={args.k}, "
          f"1 image{', compiled' if args.compile else ''}")
    print(f"{'dtype':5s} {'stats /s':>9s} {'%limit':>7s} {'IS /s':>9s} {'%limit':>7s} "
          f"{'stats/IS':>9s}")
    for d in dtypes:
        limit = peaks[d] / USEFUL_GFLOP_PER_SAMPLE
        s_rate = args.images * args.samples / statistics.median(times[(d, "stats")])
        i_rate = args.k / statistics.median(times[(d, "is")])
        out["runs"][d] = {"stats_per_s": s_rate, "is_per_s": i_rate, "ratio": s_rate / i_rate,
                          "limit_per_s": limit}
        print(f"{d:5s} {s_rate:9.1f} {100 * s_rate / limit:7.1f} {i_rate:9.1f} "
              f"{100 * i_rate / limit:7.1f} {s_rate / i_rate:9.3f}")
    return out


if __name__ == "__main__":
    main()
