"""PixelCNN sampling speed: the row-window sampler vs recomputing the whole image per pixel.

    python benchmarks/sampling.py [--n 8] [--threads 2] [--json]

Both produce the same images (tests/test_networks.py checks it). The naive sampler costs the
same for every row, so it is timed on its first ``--naive-rows`` rows and extrapolated to 28.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from maevae.config import RunConfig
from maevae.models.build import build_model


def naive_rows(dec, z: torch.Tensor, rows: int) -> None:
    c, h, w = dec.image_shape
    x = torch.zeros(z.shape[0], c, h, w)
    with torch.no_grad():
        zf = dec.z_features(z)
        for r in range(rows):
            for col in range(w):
                p = torch.sigmoid(dec.logits_from_features(x, zf)[:, :, r, col])
                x[:, :, r, col] = (torch.rand(p.shape) < p).float()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--naive-rows", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(RunConfig().model, (1, 28, 28)).eval()
    z = torch.randn(args.n, 32)
    t0 = time.perf_counter()
    naive_rows(model.decoder, z, args.naive_rows)
    naive = (time.perf_counter() - t0) * 28 / args.naive_rows
    t0 = time.perf_counter()
    model.decoder.sample(z)
    fast = time.perf_counter() - t0
    out = {"n": args.n, "threads": args.threads,
           "naive_s_extrapolated": round(naive, 2), "window_s": round(fast, 2),
           "naive_samples_per_s": round(args.n / naive, 3),
           "window_samples_per_s": round(args.n / fast, 3), "speedup": round(naive / fast, 2)}
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>24}: {v}")


if __name__ == "__main__":
    main()
