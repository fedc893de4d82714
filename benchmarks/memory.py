"""Peak memory of real ``maevae train`` / ``maevae eval`` processes (VmHWM / ru_maxrss).

Each case runs the real command line in a fresh process (``python -m maevae ...``) and reports
the peak resident set size of that process alone: a tiny wrapper process starts it and reads
``getrusage(RUSAGE_CHILDREN).ru_maxrss`` after it exits, so earlier cases do not count.

Cases (one thread each, MNIST from ``--data-root``):

* ``train``: ``maevae train PRESET`` for ``--steps`` steps, then its end-of-run validation
  (``--n-val`` images × 5 fixed binarisations × 5 posterior samples, in batches of 512);
* ``eval``: ``maevae eval`` of that run at K = ``--k`` on ``--images`` test images (the
  likelihood) plus the test statistics of those images.

Each case runs once per ``--variants`` entry, side by side in one call:

* ``now``: today's defaults (``MAEVAE_MALLOC=bounded``: blocks up to 32 MiB kept mapped,
  larger ones returned; ``eval.nll_chunk`` = 128 (image, sample) pairs per decoder pass);
* ``before``: the policy before the memory work: ``MAEVAE_MALLOC=heap`` (every freed block
  kept) and ``eval.nll_chunk`` = 512;
* ``unchunked``: ``heap`` and ``eval.nll_chunk`` = 2560, i.e. a whole batch of 512 images ×
  5 samples in one decoder pass, as maevae did before the statistics were chunked.

``eval`` reads ``eval.nll_chunk`` from the run's config.yaml, where ``train --set`` put it.

Usage::

    .venv/bin/python benchmarks/memory.py --data-root ../shared/data
    .venv/bin/python benchmarks/memory.py --data-root DATA --steps 20 --n-val 2000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# variant -> (train --set arguments, environment); the eval case reads the run's chunk
VARIANTS = {
    "now": ([], {}),
    "before": (["--set", "eval.nll_chunk=512"], {"MAEVAE_MALLOC": "heap"}),
    "unchunked": (["--set", "eval.nll_chunk=2560"], {"MAEVAE_MALLOC": "heap"}),
}
WRAPPER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def peak_rss(cmd: list[str], env: dict[str, str] | None = None) -> tuple[int, float, str]:
    """(peak RSS in KiB, wall seconds, stderr tail) of ``cmd`` run in a fresh process, with
    ``env`` added to the environment."""
    t0 = time.time()
    r = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True,
                       env={**os.environ, **(env or {})})
    wall = time.time() - t0
    if r.returncode != 0:
        raise SystemExit(f"memory.py: error: {' '.join(cmd[2:])} failed:\n{r.stderr[-2000:]}")
    return int(r.stdout.strip().splitlines()[-1]), wall, r.stderr[-500:]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True, help="folder holding MNIST/raw")
    p.add_argument("--preset", default="mnist/mae_eta1.0_gamma0.5")
    p.add_argument("--steps", type=int, default=5, help="training steps before the validation")
    p.add_argument("--n-val", type=int, default=512, help="validation images (data.n_val)")
    p.add_argument("--k", type=int, default=4096, help="importance samples of the eval case")
    p.add_argument("--images", type=int, default=2, help="test images of the eval case")
    p.add_argument("--variants", default="now,before")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        p.error(f"--variants: unknown {bad}; choose from {', '.join(VARIANTS)}")
    if not (Path(args.data_root) / "MNIST" / "raw").is_dir():
        p.error(f"--data-root {args.data_root} has no MNIST/raw folder")
    if min(args.steps, args.n_val, args.k, args.images) < 1:
        p.error("--steps, --n-val, --k and --images must be >= 1")

    maevae = [sys.executable, "-m", "maevae"]
    work = Path(tempfile.mkdtemp(prefix="maevae-memory-"))
    rows = []
    try:
        for v in variants:
            sets, env = VARIANTS[v]
            run = work / v
            train = [*maevae, "train", args.preset, "--out", str(run), "--data-root",
                     args.data_root, "--no-progress", "--compile", "never",
                     "--set", f"train.max_steps={args.steps}", "--set", f"data.n_val={args.n_val}",
                     "--set", "train.num_threads=1", *sets]
            kib, wall, _ = peak_rss(train, env)
            rows.append({"variant": v, "case": "train", "peak_rss_mib": round(kib / 1024, 1),
                         "wall_s": round(wall, 1)})
            evaluate = [*maevae, "eval", str(run), "--data-root", args.data_root,
                        "--no-progress", "--compile", "never", "--nll-samples", str(args.k),
                        "--max-images", str(args.images)]
            kib, wall, _ = peak_rss(evaluate, env)
            rows.append({"variant": v, "case": f"eval K={args.k}", "peak_rss_mib":
                         round(kib / 1024, 1), "wall_s": round(wall, 1)})
    finally:
        shutil.rmtree(work, ignore_errors=True)

    info = {"cpu": cpu_model(), "preset": args.preset, "steps": args.steps,
            "n_val": args.n_val, "k": args.k, "images": args.images, "rows": rows}
    if args.json:
        print(json.dumps(info))
        return
    print(f"cpu: {info['cpu']}; {args.preset}, {args.steps} steps + validation of "
          f"{args.n_val} images x 5 copies x 5 samples; eval K={args.k} on {args.images} images")
    print(f"{'variant':<10} {'case':<12} {'peak RSS MiB':>12} {'wall s':>8}")
    for r in rows:
        print(f"{r['variant']:<10} {r['case']:<12} {r['peak_rss_mib']:>12.1f} {r['wall_s']:>8.1f}")


if __name__ == "__main__":
    main()
