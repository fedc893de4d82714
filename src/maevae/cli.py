"""The ``maevae`` command line: thin subcommands over the library.

Every user-caused problem ends as one line ``maevae: error: ...`` and exit code 2. SIGINT
and SIGTERM end as one line ``maevae: interrupted ...`` and exit code 130 / 143; training
first saves a checkpoint at a step boundary (:mod:`maevae.signals`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from maevae import signals
from maevae.errors import MaevaeError

__all__ = [
    "COMMANDS",
    "EXAMPLES",
    "build_parser",
    "cmd_compare",
    "cmd_eval",
    "cmd_info",
    "cmd_reconstruct",
    "cmd_run",
    "cmd_sample",
    "cmd_sweep",
    "cmd_train",
    "image_shape_for",
    "main",
]

EXAMPLES = {
    "train": """examples:
  maevae train mnist/mae_eta1.0_gamma0.5 --out runs/mae --data-root ~/data
  maevae train mnist/vlae_fb --out runs/vlae --set train.max_epochs=1 --set data.n_val=500
  maevae train my_config.yaml --out runs/x --device cuda --precision bf16
  maevae train --resume runs/mae
  torchrun --nproc-per-node 4 -m maevae train mnist/vlae --out runs/ddp""",
    "eval": """examples:
  maevae eval runs/mae                      # K = 4096 importance samples (the paper)
  maevae eval runs/mae --nll-samples 64 --max-images 1000
  maevae eval runs/mae --probes --runs 5 --labels 100,1000,all""",
    "sample": "examples:\n  maevae sample runs/mae -n 64 --out samples.png",
    "reconstruct": "examples:\n  maevae reconstruct runs/mae -n 32 --out recon.png",
    "info": """examples:
  maevae info mnist/mae_eta1.0_gamma0.5
  maevae info my_config.yaml --json
  maevae info mnist/vlae --set model.decoder.mode=large   # the paper's large decoder
  maevae info --list""",
    "run": """examples:
  maevae run                       # the main job on scikit-learn's digits (offline, < 5 min)
  maevae run --out runs/main""",
    "compare": """examples:
  maevae compare runs/vlae runs/mae --out compare.md""",
    "sweep": """examples:
  maevae sweep sweeps/example_tiny.yaml                  # -> runs/sweeps/example_tiny
  maevae sweep my_sweep.yaml --out runs/sw --jobs 2 --threads 1
  maevae sweep my_sweep.yaml --set train.max_steps=20 --seeds 1,2   # a smoke test
  maevae sweep my_sweep.yaml --devices 0,1               # one run per GPU at a time
  maevae sweep my_sweep.yaml --emit-job-array sweep.sbatch   # a SLURM array, one task a run
  maevae sweep my_sweep.yaml --table-only                # the table of what is done
a rerun of the same command skips finished runs, resumes interrupted ones and retries failed
ones (docs/sweeps.md)""",
}


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error of every other maevae mistake (exit code 2)."""

    def error(self, message: str):
        self.exit(2, f"maevae: error: {message} (see `{self.prog} --help`)\n")


def _check_data_root(data_root: str | None) -> None:
    """An explicit data root (--data-root or $MAEVAE_DATA) that exists but cannot be read."""
    from maevae.data import resolve_data_root, root_is_explicit

    if not root_is_explicit(data_root):
        return
    root = resolve_data_root(data_root)
    if root.is_dir() and not os.access(root, os.R_OK | os.X_OK):
        raise MaevaeError(f"data root {root} is not readable (permission denied); fix its "
                          "permissions or pass another --data-root")


def _add_common(p: argparse.ArgumentParser, data_root: bool = True) -> None:
    if data_root:
        p.add_argument("--data-root", metavar="DIR",
                       help="dataset folder (else $MAEVAE_DATA, else ~/.cache/maevae)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")


def _add_config_overrides(p: argparse.ArgumentParser) -> None:
    """``--dataset NAME`` and ``--set KEY=VALUE`` (repeatable), read by :func:`_config_sets`."""
    from maevae.data.registry import dataset_help

    p.add_argument("--dataset", metavar="NAME",
                   help=f"shortcut for --set data.name=NAME ({dataset_help()}); with folder, "
                        "--data-root is the image folder itself")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.max_epochs=1 (repeatable)")


def _config_sets(args) -> list[str]:
    """The ``key=value`` overrides of ``--dataset`` (first) and ``--set`` (in order)."""
    sets = list(args.set)
    if args.dataset:
        sets.insert(0, f"data.name={args.dataset.strip().lower().replace('-', '_')}")
    return sets


def build_parser() -> argparse.ArgumentParser:
    """The ``maevae`` argument parser: one sub-command per entry of :data:`COMMANDS`,
    each with its options and examples (:data:`EXAMPLES`)."""

    parser = _Parser(
        prog="maevae",
        description="VAEs with mutual posterior-divergence regularization (MAE, ICLR 2019): "
                    "train, evaluate and compare VLAE / MAE / ResNet-VAE models.",
        epilog="Run `maevae COMMAND --help` for each command's options and examples.")
    from maevae import __version__

    parser.add_argument("--version", action="version", version=f"maevae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name, help_):
        return sub.add_parser(name, help=help_, description=help_, epilog=EXAMPLES[name],
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = add("train", "train a model from a preset or YAML config, or resume a run")
    p.add_argument("config", nargs="?", help="preset name (e.g. mnist/vlae) or YAML file")
    p.add_argument("--out", metavar="RUN_DIR", help="new run directory")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    _add_config_overrides(p)
    p.add_argument("--seed", type=int, help="override the seed")
    p.add_argument("--precision", choices=["fp32", "bf16"], help="override train.precision")
    p.add_argument("--compile", choices=["auto", "always", "never"],
                   help="override train.compile (torch.compile of the PixelCNN core)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_common(p)

    p = add("eval", "evaluate a trained run: IS-NLL, ELBO, KL, MPD, STD -> RUN_DIR/eval.json")
    p.add_argument("run_dir")
    p.add_argument("--nll-samples", type=int, metavar="K", help="importance samples (4096)")
    p.add_argument("--nll-chunk", type=int, metavar="N",
                   help="(image, sample) pairs per decoder pass (default: the run's "
                        "eval.nll_chunk); memory and speed (with N <= K the same values, to "
                        "rounding)")
    p.add_argument("--max-images", type=int, metavar="N",
                   help="evaluate on the first N binarised test images only (quick checks)")
    p.add_argument("--precision", choices=["fp32", "bf16"], help="evaluation precision")
    p.add_argument("--compile", choices=["auto", "always", "never"],
                   help="torch.compile the PixelCNN core (default: the run's eval.compile)")
    p.add_argument("--probes", action="store_true",
                   help="also run clustering, label-budget probes, diagnostics, figures, report")
    p.add_argument("--latent", default="mu", choices=["mu", "mean50", "sample"],
                   help="latent code for the probes (default mu)")
    p.add_argument("--runs", type=int, default=5, help="seeds / label draws for the probes")
    p.add_argument("--labels", default=None,
                   help="label budgets, e.g. 100,1000,all (default: those of 100,1000,all "
                        "that are smaller than the training set)")
    p.add_argument("--uniform-labels", action="store_true",
                   help="draw labelled subsets uniformly instead of class-balanced")
    p.add_argument("--no-figures", action="store_true", help="skip the probe figures")
    p.add_argument("--no-progress", action="store_true")
    _add_common(p)

    p = add("sample", "draw images from the prior of a trained run")
    p.add_argument("run_dir")
    p.add_argument("-n", type=int, default=64, help="number of samples (64)")
    p.add_argument("--out", default=None, help="PNG file (default RUN_DIR/samples.png)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_common(p, data_root=False)

    p = add("reconstruct", "reconstruct test images (original | reconstruction)")
    p.add_argument("run_dir")
    p.add_argument("-n", type=int, default=32, help="number of test images (32)")
    p.add_argument("--out", default=None, help="PNG file (default RUN_DIR/reconstructions.png)")
    p.add_argument("--code", choices=["mu", "mean50", "sample"], default="mu",
                   help="latent decoded: mu = posterior mean (default); mean50 = mean of 50 "
                        "posterior samples, as the authors' reconstructions; sample = one sample")
    p.add_argument("--seed", type=int, default=0, help="seed of the posterior noise (0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_common(p)

    p = add("info", "parameter counts of a preset or config, per component")
    p.add_argument("config", nargs="?", help="preset name (e.g. mnist/vlae) or YAML file")
    _add_config_overrides(p)
    p.add_argument("--data-root", metavar="DIR",
                   help="folder datasets without data.image_size: read the size from here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--list", action="store_true", help="list the presets")

    p = add("run", "the main job: VLAE vs MAE on scikit-learn's digits, evaluated, with a report")
    p.add_argument("--out", default=None, help="output folder (default runs/main-<time>)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--device", default="auto")

    p = add("compare", "put several evaluated runs side by side (Markdown)")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", default=None, help="write the table to this Markdown file")

    p = add("sweep", "train and evaluate a grid of presets × overrides × seeds; one table")
    p.add_argument("sweep_file", metavar="SWEEP.yaml", help="the sweep file (docs/sweeps.md)")
    p.add_argument("--out", metavar="DIR", help="sweep folder (default runs/sweeps/<name>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key of every run, e.g. train.max_steps=20")
    p.add_argument("--seeds", metavar="S1,S2", help="replace the file's seeds, e.g. 1,2")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="runs at the same time on the CPU (default 1)")
    p.add_argument("--threads", type=int, metavar="T",
                   help="torch / BLAS threads of each run (OMP_NUM_THREADS of the children)")
    p.add_argument("--devices", metavar="0,1",
                   help="GPUs: one run per GPU at a time (CUDA_VISIBLE_DEVICES per run)")
    p.add_argument("--only-index", type=int, metavar="I",
                   help="run only run number I (0-based; a job-array task); no table")
    p.add_argument("--emit-job-array", metavar="FILE",
                   help="write a SLURM job-array script (one task per run) and exit")
    p.add_argument("--table-only", action="store_true",
                   help="train nothing: write the table and figures of the runs done so far")
    p.add_argument("--no-progress", action="store_true",
                   help="log finished and failed runs only, not each stage")
    _add_common(p)
    return parser


# --------------------------------------------------------------------------- commands
def cmd_info(args) -> None:
    """``maevae info``: list the presets (``--list``) or print a preset's resolved config
    and its parameter counts."""
    from maevae.config import list_presets, load_config
    from maevae.models.build import count_parameters

    if args.list:
        if args.config or args.set or args.dataset:
            raise MaevaeError("info --list takes no CONFIG, --set or --dataset; drop them, or "
                              "drop --list to count a config's parameters")
        print("\n".join(list_presets()))
        return
    if not args.config:
        raise MaevaeError("info needs a preset name or YAML file (see `maevae info --list`)")
    cfg = load_config(args.config, _config_sets(args))
    shape = image_shape_for(cfg, args.data_root)
    counts = count_parameters(_meta_model(cfg, shape))
    if args.json:
        print(json.dumps({"config": args.config, "image_shape": list(shape), **counts}))
        return
    print(f"{args.config}: {cfg.data.name} images {shape[0]}x{shape[1]}x{shape[2]}, "
          f"encoder {cfg.model.encoder.type}, decoder {cfg.model.decoder.type}"
          + (f" ({cfg.model.decoder.mode})" if cfg.model.decoder.type == "pixelcnn" else "")
          + f", prior {cfg.model.prior.type}")
    for k, v in counts.items():
        print(f"  {k:<8} {v:>12,}")


def _meta_model(cfg, shape):
    """The model on torch's meta device: shapes only, nothing allocated, whatever its size."""
    import torch

    from maevae.models.build import build_model

    try:
        with torch.device("meta"):
            return build_model(cfg.model, shape)
    except (RuntimeError, OverflowError):  # "numel: integer multiplication overflow"
        raise MaevaeError("this model has tensors of more than 2^63 elements; make model."
                          "encoder.latent_dim / model.decoder / model.prior smaller") from None


def image_shape_for(cfg, data_root: str | None = None) -> tuple[int, int, int]:
    """[C, H, W] of the configured dataset without loading it (folder: data.image_size, else
    the common size in the image files' headers; grey when binarised, else RGB)."""
    from maevae.data.registry import image_shape

    shape = image_shape(cfg.data.name, cfg.data.binarize, cfg.data.image_size)
    if shape is not None:
        return shape
    from maevae.data import resolve_data_root, root_is_explicit
    from maevae.data.folder import infer_image_size

    path = Path(cfg.data.path).expanduser() if cfg.data.path else None
    if path is None or not path.is_absolute():
        if path is None and not root_is_explicit(data_root):
            raise MaevaeError("a folder dataset needs data.image_size: [H, W], or the images "
                              "(--data-root DIR or data.path) to read the size from")
        base = resolve_data_root(data_root)
        path = base / path if path is not None else base
    if not path.is_dir():
        raise MaevaeError(f"image folder {path} does not exist; fix --data-root / data.path "
                          "or set data.image_size: [H, W]")
    return image_shape(cfg.data.name, cfg.data.binarize, infer_image_size(path))


def cmd_train(args) -> None:
    """``maevae train``: make a run directory for a preset (or ``--resume`` one) and train
    it (one process, or one per GPU under ``torchrun``)."""
    from maevae.config import load_config
    from maevae.device import resolve_device
    from maevae.runs.directory import RunDir
    from maevae.runs.load import load_run_config, load_run_data, new_run
    from maevae.train.distributed import barrier, init_distributed
    from maevae.train.trainer import Trainer

    device = resolve_device(args.device)
    if args.resume:
        if args.config or args.out or args.set or args.dataset:
            raise MaevaeError("--resume RUN_DIR takes no CONFIG, --out, --set or --dataset: "
                              "the run's own config.yaml is used")
        if args.precision or args.seed is not None:
            raise MaevaeError("--resume RUN_DIR keeps the run's seed and precision; drop "
                              "--seed / --precision (or start a new run with --out)")
        run = RunDir(args.resume)
        cfg = load_run_config(run)
        if args.compile:  # how the function is executed, not what it computes: allowed
            cfg.train.compile = args.compile
    else:
        if not args.config or not args.out:
            raise MaevaeError("train needs CONFIG and --out RUN_DIR (or --resume RUN_DIR); "
                              "see `maevae train --help`")
        sets = _config_sets(args)
        if args.seed is not None:
            sets.append(f"seed={args.seed}")
        if args.precision:
            sets.append(f"train.precision={args.precision}")
        if args.compile:
            sets.append(f"train.compile={args.compile}")
        cfg = load_config(args.config, sets)
        if cfg.data.name == "folder" and cfg.data.path is None and args.data_root:
            # record where the images are, so eval / reconstruct find them without --data-root
            cfg.data.path = str(Path(args.data_root).expanduser().absolute())
        from maevae.runs.outputs import check_output_path

        check_output_path(args.out, folder=True)  # not inside another run's files
        run = RunDir(args.out)
        run.check_new()  # before loading data: never overwrite another run
    if cfg.train.num_threads:
        import torch

        torch.set_num_threads(cfg.train.num_threads)
    dist = init_distributed(device)
    _check_data_root(args.data_root)
    from maevae.runs.budget import check_model_early, check_train  # before allocating

    check_model_early(cfg, device)
    data = load_run_data(cfg, args.data_root, run if args.resume else None,
                         warn=None if dist.is_main else (lambda _msg: None))  # one rank warns
    check_train(cfg, data.image_shape, max(len(data.val_x), len(data.test_x)), device)
    # model, batch size and data are checked before the run directory is made: a mistake
    # there leaves nothing behind (and a signal until here ends the command, nothing written)
    trainer = Trainer(cfg, data, run, device, dist, progress=not args.no_progress)
    signals.record_only()  # from here on a signal stops training at its next step boundary
    if not args.resume and dist.is_main:
        new_run(run, cfg, data)
    barrier(dist)
    if dist.is_main:
        print(f"{data.summary()}; run directory {run.path}")
        for note in data.notes:
            print(f"  data: {note}")
    if args.resume and trainer.resume():
        c = trainer.counters
        print(f"resumed at step {c.step} (epoch {c.epoch + 1}, batch {c.batch})")
        if c.stopped:
            print(f"this run already finished ({c.stopped}); nothing to do")
            return
    else:
        trainer.initialize()
        trainer.save_checkpoint()
    trainer.fit()  # a signal: checkpoint at a step boundary, then signals.Interrupted


def cmd_eval(args) -> None:
    """``maevae eval``: the test statistics and the IS log-likelihood of a trained run,
    written to its ``eval.json`` (:func:`maevae.evaluate.nll.evaluate_run`)."""
    from maevae.device import resolve_device
    from maevae.evaluate.nll import evaluate_run

    if args.nll_samples is not None and args.nll_samples < 1:
        raise MaevaeError(f"--nll-samples {args.nll_samples}: use K >= 1 importance samples")
    if args.nll_chunk is not None and args.nll_chunk < 1:
        raise MaevaeError(f"--nll-chunk {args.nll_chunk}: use N >= 1 pairs per pass")
    if args.max_images is not None and args.max_images < 1:
        raise MaevaeError(f"--max-images {args.max_images}: use N >= 1")
    _check_data_root(args.data_root)
    device = resolve_device(args.device)
    if args.probes:  # bad probe options fail before the (long) likelihood evaluation
        from maevae.evaluate.probe_options import validate_probe_args
        from maevae.evaluate.representation import run_probes
        from maevae.runs.directory import RunDir

        # run.json's split sizes and labels: what does not fit fails here, not after the NLL
        meta = RunDir(args.run_dir).meta()
        validate_probe_args(args.latent, args.runs, args.labels, sizes=meta.get("sizes"),
                            labelled=meta.get("labelled"))
    out = evaluate_run(args.run_dir, args.data_root, device, args.nll_samples, args.precision,
                       args.max_images, progress=not args.no_progress, compile=args.compile,
                       nll_chunk=args.nll_chunk)
    if args.probes:
        run_probes(args.run_dir, args.data_root, device, latent=args.latent, runs=args.runs,
                   labels=args.labels, progress=not args.no_progress,
                   balanced=not args.uniform_labels, figures=not args.no_figures)
    else:
        print(f"wrote {Path(args.run_dir) / 'eval.json'} (nll {out['nll']:.3f})")


def cmd_sample(args) -> None:
    """``maevae sample``: ``-n`` images drawn from a trained run's model, saved as one PNG
    grid."""
    from maevae.device import resolve_device
    from maevae.evaluate.figures import save_sample_grid
    from maevae.evaluate.generate import sample_images

    if args.n < 1:
        raise MaevaeError(f"-n {args.n}: draw at least one sample")
    if not 0 <= args.seed <= 2**32 - 1:
        raise MaevaeError(f"--seed {args.seed}: use a seed in [0, 4294967295] (2^32 - 1)")
    out = _png_out(args, "samples.png")
    from maevae.runs.budget import sample_budget

    sample_budget(args.run_dir, args.n, resolve_device(args.device))
    t0 = time.time()
    x = sample_images(args.run_dir, resolve_device(args.device), args.n, args.seed,
                      progress=not args.no_progress)
    from maevae.runs.directory import RunDir
    from maevae.runs.load import load_run_config

    run = RunDir(args.run_dir)
    save_sample_grid(x.numpy(), out, run.path.resolve().name, load_run_config(run).data.name,
                     args.seed, nrow=int(max(1, round(args.n ** 0.5))))
    dt = time.time() - t0
    print(f"wrote {out} ({args.n} samples in {dt:.1f} s, {args.n / dt:.1f} samples/s)")


def cmd_reconstruct(args) -> None:
    """``maevae reconstruct``: the first ``-n`` test images of a run next to their
    reconstructions, saved as one PNG grid."""
    from maevae.device import resolve_device
    from maevae.evaluate.figures import save_reconstruction_grid
    from maevae.evaluate.generate import reconstruct_images

    if args.n < 1:
        raise MaevaeError(f"-n {args.n}: reconstruct at least one image")
    out = _png_out(args, "reconstructions.png")
    _check_data_root(args.data_root)
    x, r = reconstruct_images(args.run_dir, args.data_root, resolve_device(args.device), args.n,
                              code=args.code, seed=args.seed,
                              progress=not args.no_progress)
    from maevae.evaluate.codes import LATENT_TITLES

    seed = f", seed {args.seed}" if args.code != "mu" else ""
    save_reconstruction_grid(x.numpy(), r.numpy(), out,
                             title=f"{Path(args.run_dir).resolve().name}: test images and their "
                                   f"greedy reconstructions from the {LATENT_TITLES[args.code]}"
                                   f"{seed}")
    print(f"wrote {out}")


def _png_out(args, default_name: str) -> Path:
    """``--out`` (checked), else ``RUN_DIR/default_name``."""
    from maevae.runs.outputs import check_output_path

    out = Path(args.out) if args.out else Path(args.run_dir) / default_name
    check_output_path(out, [args.run_dir], allow=[default_name])
    _check_png(out)
    return out


def _check_png(out: Path) -> None:
    if out.suffix.lower() != ".png":
        raise MaevaeError(f"--out {out}: give a .png file name")
    if not out.parent.exists():
        raise MaevaeError(f"--out {out}: folder {out.parent} does not exist")


def cmd_run(args) -> None:
    """``maevae run``: the main job, VLAE against MAE on the 8×8 digits
    (:func:`maevae.digits_comparison.main_job`)."""
    from maevae.digits_comparison import main_job
    from maevae.runs.outputs import check_output_path

    if args.out:
        check_output_path(args.out, folder=True)
    main_job(args.out, device_name=args.device, progress=not args.no_progress)


def cmd_compare(args) -> None:
    """``maevae compare``: one Markdown table of several evaluated runs, printed or
    written to ``--out``."""
    from maevae.evaluate.compare import compare_runs
    from maevae.runs.outputs import check_output_path

    if args.out:  # before reading the runs; never over a file of a run (e.g. its eval.json)
        check_output_path(args.out, args.run_dirs)
    text = compare_runs(args.run_dirs)
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    print(text)


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise MaevaeError(f"{option} {text!r}: give integers separated by commas, e.g. 1,2"
                          ) from None
    if not values:
        raise MaevaeError(f"{option} {text!r}: give at least one integer")
    return values


def cmd_sweep(args) -> None:
    """``maevae sweep``: train and evaluate every run of a sweep file (resumable, parallel)
    and write its table (:func:`maevae.sweep.command.run_sweep`)."""
    from maevae.sweep.command import run_sweep

    seeds = _int_list(args.seeds, "--seeds") if args.seeds else None
    devices = None
    if args.devices:
        devices = [d.strip() for d in args.devices.split(",") if d.strip()]
        if not devices or any(not d.isdigit() for d in devices):
            raise MaevaeError(f"--devices {args.devices!r}: give GPU numbers, e.g. 0,1")
        if args.jobs is not None and args.jobs != len(devices):
            raise MaevaeError(f"--jobs {args.jobs} with --devices {args.devices}: with GPUs "
                              "one run per GPU runs at a time; drop --jobs")
    if args.only_index is not None and (args.table_only or args.emit_job_array):
        raise MaevaeError("--only-index runs one run; drop --table-only / --emit-job-array")
    _check_data_root(args.data_root)
    forwarded = [a for s in args.set for a in ("--set", s)]
    if args.seeds:
        forwarded += ["--seeds", args.seeds]
    if args.threads:
        forwarded += ["--threads", str(args.threads)]
    if args.device != "auto":
        forwarded += ["--device", args.device]
    if args.data_root:
        forwarded += ["--data-root", args.data_root]
    jobs = 1 if args.jobs is None else args.jobs
    run_sweep(args.sweep_file, args.out, sets=args.set, seeds=seeds, jobs=jobs,
              threads=args.threads, devices=devices, only_index=args.only_index,
              table_only=args.table_only, emit_job_array=args.emit_job_array,
              job_array_args=forwarded, device=args.device, data_root=args.data_root,
              progress=not args.no_progress)


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "sample": cmd_sample,
            "reconstruct": cmd_reconstruct, "info": cmd_info, "run": cmd_run,
            "compare": cmd_compare, "sweep": cmd_sweep}


def main(argv: list[str] | None = None) -> None:
    """The command line: parse ``argv`` (default ``sys.argv[1:]``) and run the command.

    A :class:`~maevae.errors.MaevaeError` or an ``OSError`` becomes one ``maevae: error: ...``
    line on stderr and exit status 2 (or the error's own); SIGINT / SIGTERM exit with
    128 + the signal's number."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:  # a command is required: the help, and argparse's usage exit code
        parser.print_help(sys.stderr)
        sys.exit(2)
    # SIGINT / SIGTERM: recorded; training stops at a step boundary, anything else raises
    # KeyboardInterrupt (not inside a file write); exit 128 + signal (130 / 143)
    with signals.installed(ignore_after_signal=True):
        try:
            if args.command in ("train", "eval", "run", "sample", "reconstruct"):
                from maevae.device import malloc_policy_from_env, set_malloc_policy

                # activations up to 32 MiB stay mapped for reuse (+45-55% IS samples/s),
                # larger one-off blocks go back to the OS ($MAEVAE_MALLOC)
                set_malloc_policy(malloc_policy_from_env())
            COMMANDS[args.command](args)
        except signals.Interrupted as e:
            print(f"maevae: {e}", file=sys.stderr)
            sys.exit(e.exit_code)
        except MaevaeError as e:
            print(f"maevae: error: {e}", file=sys.stderr)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            print(f"maevae: interrupted by {signals.name(signals.received())}",
                  file=sys.stderr)
            sys.exit(signals.exit_code())
        except OSError as e:
            if os.environ.get("MAEVAE_DEBUG"):
                raise
            where = f" ({e.filename})" if getattr(e, "filename", None) else ""
            print(f"maevae: error: {e.strerror or e}{where}; check the path, free disk space "
                  "and permissions", file=sys.stderr)
            sys.exit(2)
