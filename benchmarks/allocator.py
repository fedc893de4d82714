"""Speed of the allocator policies and IS chunk sizes, side by side (``maevae.device``).

    python benchmarks/allocator.py [--json] [--rounds 5] [--k 512] [--chunks 128,512]
                                   [--policies bounded,heap] [--repeats 2]

The allocator policy is process-wide, so each policy runs in its own fresh process, the
policies alternating ``--repeats`` times (a noisy machine then affects them alike). In each
process, on the paper's small-decoder binary-MNIST model (``throughput.make_model``: random
binary 28×28 data, DDI on the batch; the ``fast`` variant: causal convolutions,
channels-last, WN folded for the likelihood), one thread, fp32 and bf16, interleaved round by
round (medians over ``--rounds`` timed rounds after a warm-up):

* training img/s: batch 100, one full step (``throughput.Trainer``, fused Adam);
* IS samples/s: ``importance_sampled_nll`` of one image with K samples, for every chunk
  size in ``--chunks`` (the NLLs of the chunk sizes are compared: they differ by rounding).

Ratios are to ``heap`` with the largest chunk (maevae before the memory work).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput as tp  # noqa: E402
from maevae import device as prec  # noqa: E402
from maevae.config import ObjectiveConfig  # noqa: E402


def _timed_is(model, x1, k: int, chunk: int, dtype: str, device):
    """(wall seconds, result) of one IS pass."""
    res = []
    wall, _ = tp._timed(lambda: res.append(tp.is_pass(model, x1, k, chunk, dtype, True)), device)
    return wall, res[0]


def measure(policy: str, rounds: int, k: int, chunks: list[int]) -> dict:
    """One process: the figures of ``policy`` (see the module docstring)."""
    assert prec.set_malloc_policy(policy), "glibc mallopt is needed"
    torch.set_num_threads(1)
    device = torch.device("cpu")
    out: dict = {"policy": policy}
    for dtype in ("fp32", "bf16"):
        model, x = tp.make_model("small", device, seed=0)
        trainer = tp.Trainer(model, x, dtype, ObjectiveConfig(eta=1.0, gamma=0.5))
        trainer.use_fused(True)
        initial = [(v, v.clone()) for v in model.state_dict().values()]
        times: dict = {"train": [], **{c: [] for c in chunks}}
        nll: dict = {}
        with tp.variant_settings(tp.VARIANTS["fast"]):
            for r in range(rounds + 1):  # round 0 warms up
                with torch.no_grad():
                    for v, v0 in initial:
                        v.copy_(v0)
                wall, _ = tp._timed(trainer.step, device)
                if r:
                    times["train"].append(wall)
                for c in chunks:
                    wall, res = _timed_is(model, x[:1], k, c, dtype, device)
                    if r:
                        times[c].append(wall)
                    nll[c] = float(res.nll[0])
        out[dtype] = {"train_img_s": tp.BATCH / statistics.median(times["train"]),
                      **{f"is_samples_s_chunk{c}": k / statistics.median(times[c])
                         for c in chunks},
                      "nll": nll}
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--k", type=int, default=512)
    p.add_argument("--chunks", default="128,512")
    p.add_argument("--policies", default="bounded,heap")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    chunks = sorted(int(c) for c in args.chunks.split(","))
    if args.child:
        print(json.dumps(measure(args.child, args.rounds, args.k, chunks)))
        return {}
    policies = [s.strip() for s in args.policies.split(",")]
    runs: dict = {pol: [] for pol in policies}
    for _ in range(args.repeats):
        for pol in policies:
            r = subprocess.run([sys.executable, __file__, "--child", pol, "--rounds",
                                str(args.rounds), "--k", str(args.k), "--chunks", args.chunks],
                               capture_output=True, text=True, env=os.environ.copy())
            if r.returncode:
                raise SystemExit(f"allocator.py: {pol} failed:\n{r.stderr[-2000:]}")
            runs[pol].append(json.loads(r.stdout.strip().splitlines()[-1]))
    med = {pol: {dt: {key: statistics.median(run[dt][key] for run in rs)
                      for key in rs[0][dt] if key != "nll"} for dt in ("fp32", "bf16")}
           for pol, rs in runs.items()}
    nll_spread = {pol: {dt: max(abs(v - rs[0][dt]["nll"][str(chunks[-1])])
                                for run in rs for v in run[dt]["nll"].values())
                        for dt in ("fp32", "bf16")} for pol, rs in runs.items()}
    info = {"cpu": tp.machine_info(torch.device("cpu")).get("cpu"), "k": args.k,
            "chunks": chunks, "median": med, "nll_max_abs_diff_vs_largest_chunk": nll_spread}
    if args.json:
        print(json.dumps(info))
        return info
    base_pol = "heap" if "heap" in med else policies[0]
    print(f"cpu: {info['cpu']}; 1 thread; small decoder; IS K = {args.k} on one image; "
          f"medians of {args.repeats} processes per policy x {args.rounds} rounds")
    for dt in ("fp32", "bf16"):
        base = med[base_pol][dt]
        print(f"{dt}: ratios to {base_pol}, chunk {chunks[-1]}")
        for pol in policies:
            m = med[pol][dt]
            cells = [f"train {m['train_img_s']:.1f} img/s "
                     f"({m['train_img_s'] / base['train_img_s']:.2f}x)"]
            for c in chunks:
                key = f"is_samples_s_chunk{c}"
                cells.append(f"IS chunk {c} {m[key]:.0f}/s "
                             f"({m[key] / base[f'is_samples_s_chunk{chunks[-1]}']:.2f}x)")
            print(f"  {pol:<8} " + "; ".join(cells))
    print(f"largest |NLL(chunk) - NLL(chunk {chunks[-1]})|: {nll_spread}")
    return info


if __name__ == "__main__":
    main()
