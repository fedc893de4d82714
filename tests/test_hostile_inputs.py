"""Hostile and mistaken inputs: every one ends in ONE line ``maevae: error: ...``, exit code 2.

A table of cases run in-process through ``maevae.cli.main``. Each case checks that

* the command exits with code 2, stderr is exactly one line starting with ``maevae: error:``
  that names the problem (an expected substring), and no traceback is printed anywhere;
* an existing run directory used by the command is byte-for-byte unchanged afterwards;
* a new ``--out`` folder is either not created or left reusable (a retry is not blocked).

Permission cases are simulated (tests run as root, for whom chmod 000 does not bite), and so
is a full disk (ENOSPC raised from the durable write).
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from maevae.cli import main as cli_main
from maevae.runs import files as ckpt_mod
from maevae.runs.directory import RunDir

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")


@dataclass
class Ctx:
    tmp: Path
    run: Path  # a copy of a small trained run
    new: Path  # a fresh --out that does not exist yet
    shared: Path | None = None  # ../shared/data (read-only; only linked to, never written)

    @property
    def mnist(self) -> Path:
        """A data root whose MNIST/raw links to the shared files (replace one to corrupt it)."""
        root = self.tmp / "mnist-root"
        raw = root / "MNIST" / "raw"
        if not raw.exists():
            raw.mkdir(parents=True)
            for stem in MNIST_FILES:
                (raw / f"{stem}.gz").symlink_to(self.shared / "MNIST" / "raw" / f"{stem}.gz")
        return root


@dataclass
class Case:
    id: str
    argv: str  # formatted with the Ctx fields, split on whitespace
    expect: str  # must occur in the one error line
    setup: Callable[[Ctx], None] | None = None
    patch: Callable[[pytest.MonkeyPatch, Ctx], None] | None = None
    mnist: bool = False  # needs ../shared/data
    new_may_remain: bool = False  # the new --out may remain (as a resumable run)
    marks: tuple = field(default_factory=tuple)


def _tt(*sets: str) -> str:
    """``train tiny/test --out {new}`` with overrides."""
    return "train tiny/test --out {new} --no-progress --set train.num_threads=1 " + " ".join(
        f"--set {s}" for s in sets)


# ------------------------------------------------------------------------------ set-ups
def _write(rel: str, text: str):
    def setup(c: Ctx) -> None:
        p = c.tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return setup


def _mkdir(rel: str):
    return lambda c: (c.tmp / rel).mkdir(parents=True, exist_ok=True)


def _edit_run_json(**kw):
    def setup(c: Ctx) -> None:
        p = c.run / "run.json"
        p.write_text(json.dumps({**json.loads(p.read_text()), **kw}))
    return setup


def _run_file(rel: str, how: str):
    def setup(c: Ctx) -> None:
        p = c.run / rel
        if how == "delete":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        elif how == "flip":
            b = bytearray(p.read_bytes())
            b[len(b) // 2] ^= 0x01
            p.write_bytes(bytes(b))
        elif how == "truncate":
            p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
        elif how.startswith("append:"):
            p.write_text(p.read_text() + how.removeprefix("append:"))
        elif how.startswith("text:"):
            p.write_text(how.removeprefix("text:"))
    return setup


def _corrupt_all_checkpoints(c: Ctx) -> None:
    for d in (c.run / "checkpoints").iterdir():
        p = d / "model.safetensors"
        p.write_bytes(p.read_bytes()[:100])


def _edit_config(old: str, new: str):
    def setup(c: Ctx) -> None:
        p = c.run / "config.yaml"
        text = p.read_text()
        assert old in text
        p.write_text(text.replace(old, new, 1))
    return setup


def _mnist_file(stem: str, how: str):
    """Put a bad plain (un-gzipped) copy of one MNIST file in front of the linked .gz."""
    def setup(c: Ctx) -> None:
        raw = c.mnist / "MNIST" / "raw"
        good = gzip.decompress((raw / f"{stem}.gz").read_bytes())
        if how == "truncate":
            bad = good[: len(good) // 2]
        elif how == "magic":
            bad = b"\x08\x03\x00\x00" + good[4:]
        elif how == "checksum":  # a structurally valid file: one label changed
            b = bytearray(good)
            b[100] = (b[100] + 1) % 10
            bad = bytes(b)
        if how == "gzip":
            gz = bytearray((raw / f"{stem}.gz").read_bytes())
            (raw / f"{stem}.gz").unlink()  # the link, not the shared file
            gz[len(gz) // 2] ^= 0xFF
            (raw / f"{stem}.gz").write_bytes(bytes(gz))
            return
        (raw / stem).write_bytes(bad)
    return setup


def _images(h: int, w: int, n: int = 30, rel: str = "imgs"):
    def setup(c: Ctx) -> None:
        from PIL import Image

        d = c.tmp / rel
        d.mkdir()
        rng = np.random.default_rng(0)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(d / f"{i:03d}.png")
    return setup


def _access_denied(rel: str):
    """Simulate a folder without permission (root ignores chmod): os.access says no."""
    def patch(mp: pytest.MonkeyPatch, c: Ctx) -> None:
        target = (c.tmp / rel).absolute()
        real = os.access

        def access(path, mode, *a, **k):
            if Path(path).absolute() == target:
                return False
            return real(path, mode, *a, **k)
        mp.setattr(os, "access", access)
    return patch


def _disk_full(only_suffix: str | None = None):
    def patch(mp: pytest.MonkeyPatch, c: Ctx) -> None:
        real = ckpt_mod.write_bytes_durable

        def full(path, data):
            if only_suffix is None or str(path).endswith(only_suffix):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            return real(path, data)
        mp.setattr(ckpt_mod, "write_bytes_durable", full)
    return patch


_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")

CASES = [
    # ---- invalid config values -----------------------------------------------------------
    Case("eta-negative", _tt("objective.eta=-1"), "objective.eta=-1.0 is out of range"),
    Case("gamma-negative", _tt("objective.gamma=-0.5"), "objective.gamma=-0.5 is out of range"),
    Case("batch1-pairwise", _tt("train.batch_size=1"), "MAE regularizer needs pairs"),
    Case("batch2-smoothness", _tt("train.batch_size=2"), "batch_size must be >= 3"),
    Case("K0-config", _tt("eval.nll_samples=0"), "eval.nll_samples=0 is out of range"),
    Case("kl-samples0", _tt("objective.kl_samples_train=0"), "objective.kl_samples_train=0"),
    Case("lr-zero", _tt("train.lr=0"), "train.lr=0.0 is out of range"),
    Case("max-epochs0", _tt("train.max_epochs=0"), "train.max_epochs=0 is out of range"),
    Case("keep0", _tt("train.keep_checkpoints=0"), "train.keep_checkpoints=0"),
    Case("max-nonfinite0", _tt("train.max_nonfinite=0"), "train.max_nonfinite=0"),
    Case("seed-negative", _tt() + " --seed -1", "seed=-1 is out of range"),
    Case("betas-one", _tt("train.betas=[0.9]"), "train.betas=[0.9] is out of range"),
    Case("image-size-zero", _tt("data.image_size=[0,5]"), "data.image_size"),
    Case("free-bits-mode", _tt("objective.free_bits_mode=batch_total"),
         "needs objective.free_bits > 0"),
    Case("pixelcnnpp-binary", _tt("model.decoder.type=pixelcnnpp"), "set data.binarize=false"),
    # ---- unknown enum values ---------------------------------------------------------
    Case("enum-decoder-mode", _tt("model.decoder.mode=huge"),
         "model.decoder.mode: unknown value 'huge'"),
    Case("enum-split", _tt("data.split=foo"), "data.split: unknown value 'foo'"),
    Case("enum-dataset", _tt("data.name=foo"), "data.name: unknown value 'foo'"),
    Case("enum-encoder", _tt("model.encoder.type=vit"), "model.encoder.type: unknown value"),
    Case("enum-precision-flag", _tt() + " --precision fp8", "argument --precision"),
    # ---- wrong types -----------------------------------------------------------------
    Case("type-lr", _tt("train.lr=abc"), "train.lr: got 'abc'"),
    Case("type-batch-float", _tt("train.batch_size=2.5"), "train.batch_size: got 2.5"),
    Case("type-bool", _tt("train.ddi=maybe"), "train.ddi: got 'maybe'"),
    Case("type-list", _tt("train.betas=0.9"), "train.betas: got 0.9"),
    Case("type-section", _tt("train=5"), "train: expected a mapping"),
    # ---- unknown keys, malformed overrides ---------------------------------------------
    Case("unknown-key", _tt("train.lrr=1"), "unknown config key train.lrr"),
    Case("unknown-section", _tt("foo.bar=1"), "unknown config key foo"),
    Case("set-no-equals", _tt("nonsense"), "expected key=value"),
    Case("set-empty-part", _tt("train..lr=1"), "expected a dotted key"),
    # ---- config files ----------------------------------------------------------------
    Case("unknown-preset", "train no/such_preset --out {new}", "unknown preset 'no/such_preset'"),
    Case("missing-yaml", "train {tmp}/missing.yaml --out {new}", "does not exist"),
    Case("yaml-syntax", "train {tmp}/bad.yaml --out {new}", "is not valid YAML at line",
         setup=_write("bad.yaml", "train: {lr: [1, 2\nseed: 3\n")),
    Case("yaml-list", "train {tmp}/list.yaml --out {new}", "must be a mapping of keys",
         setup=_write("list.yaml", "- 1\n- 2\n")),
    Case("yaml-bad-type", "train {tmp}/t.yaml --out {new}", "train.lr: got 'fast'",
         setup=_write("t.yaml", "train:\n  lr: fast\n")),
    Case("yaml-is-folder", "train {tmp}/d.yaml --out {new}", "cannot read config",
         setup=_mkdir("d.yaml")),
    Case("info-unknown-preset", "info no/such", "unknown preset"),
    # ---- command-line mistakes -------------------------------------------------------------
    Case("train-no-out", "train tiny/test", "needs CONFIG and --out"),
    Case("resume-with-set", "train --resume {run} --set train.lr=1", "takes no CONFIG"),
    Case("unknown-flag", _tt() + " --bogus", "unrecognized arguments: --bogus"),
    Case("unknown-command", "frobnicate", "invalid choice: 'frobnicate'"),
    Case("device-cuda-no-gpu", _tt() + " --device cuda", "no CUDA GPU", marks=(_no_cuda,)),
    Case("device-unknown", _tt() + " --device tpu", "unknown device 'tpu'"),
    Case("eval-K0", "eval {run} --nll-samples 0", "--nll-samples 0"),
    Case("eval-max-images0", "eval {run} --max-images 0", "--max-images 0"),
    Case("sample-n0", "sample {run} -n 0", "-n 0: draw at least one sample"),
    Case("sample-n-text", "sample {run} -n abc", "invalid int value: 'abc'"),
    Case("sample-not-png", "sample {run} --out {tmp}/x.jpg", "give a .png file name"),
    Case("reconstruct-out-missing-folder", "reconstruct {run} --out {tmp}/nope/r.png",
         "does not exist"),
    # ---- output folders ------------------------------------------------------------------
    Case("out-is-existing-run", _tt().replace("{new}", "{run}"), "is not empty"),
    Case("out-is-file", _tt().replace("{new}", "{tmp}/f.txt"), "is a file",
         setup=_write("f.txt", "x")),
    Case("out-parent-is-file", _tt().replace("{new}", "{tmp}/f.txt/run"), "is a file, not a folder",
         setup=_write("f.txt", "x")),
    Case("out-not-writable", _tt().replace("{new}", "{tmp}/ro/run"), "is not writable",
         setup=_mkdir("ro"), patch=_access_denied("ro")),
    Case("disk-full-at-create", _tt(), "No space left on device", patch=_disk_full(),
         new_may_remain=True),
    Case("disk-full-at-checkpoint", _tt(), "cannot write checkpoint",
         patch=_disk_full(".safetensors"), new_may_remain=True),
    # ---- run directories -----------------------------------------------------------------
    Case("resume-not-a-run", "train --resume {tmp}/empty", "not a maevae run directory",
         setup=_mkdir("empty")),
    Case("resume-missing", "train --resume {tmp}/nope", "does not exist"),
    Case("eval-not-a-run", "eval {tmp}/empty", "not a maevae run directory", setup=_mkdir("empty")),
    Case("incompatible-version-resume", "train --resume {run}", "incompatible maevae",
         setup=_edit_run_json(format_version=999)),
    Case("incompatible-version-eval", "eval {run}", "incompatible maevae",
         setup=_edit_run_json(format_version=0)),
    Case("run-json-corrupt", "eval {run}", "run.json is corrupt",
         setup=_run_file("run.json", "text:{\"format_version\": ")),
    Case("eval-without-model", "eval {run}", "has no trained model yet",
         setup=_run_file("best", "delete")),
    Case("best-checksum", "sample {run}", "checksum mismatch",
         setup=_run_file("best/model.safetensors", "flip")),
    Case("best-truncated", "eval {run}", "truncated or corrupted",
         setup=_run_file("best/model.safetensors", "truncate")),
    Case("config-yaml-edited", "eval {run}", "unknown config key bogus",
         setup=_run_file("config.yaml", "append:bogus: 1\n")),
    Case("config-yaml-missing", "eval {run}", "config.yaml is missing",
         setup=_run_file("config.yaml", "delete")),
    Case("all-checkpoints-corrupt", "train --resume {run}", "is valid (all truncated",
         setup=_corrupt_all_checkpoints),
    Case("checkpoint-model-mismatch", "train --resume {run}", "does not match the configured",
         setup=_edit_config("latent_dim: 4", "latent_dim: 5")),
    # ---- data --------------------------------------------------------------------------
    Case("data-root-missing", "train mnist/vlae --out {new} --data-root {tmp}/nodata",
         "data root {tmp}/nodata does not exist"),
    Case("data-root-is-file", "train mnist/vlae --out {new} --data-root {tmp}/f.txt",
         "is not a folder", setup=_write("f.txt", "x")),
    Case("data-root-unreadable", "train mnist/vlae --out {new} --data-root {tmp}/locked",
         "is not readable", setup=_mkdir("locked"), patch=_access_denied("locked")),
    Case("idx-truncated", "train mnist/vlae --out {new} --data-root {tmp}/mnist-root",
         "train-labels-idx1-ubyte is truncated",
         setup=_mnist_file("train-labels-idx1-ubyte", "truncate"), mnist=True),
    Case("idx-wrong-magic", "train mnist/vlae --out {new} --data-root {tmp}/mnist-root",
         "is not an IDX file (bad magic", setup=_mnist_file("t10k-labels-idx1-ubyte", "magic"),
         mnist=True),
    Case("idx-checksum", "train mnist/vlae --out {new} --data-root {tmp}/mnist-root",
         "failed its checksum", setup=_mnist_file("train-labels-idx1-ubyte", "checksum"),
         mnist=True),
    Case("idx-gzip-corrupt", "train mnist/vlae --out {new} --data-root {tmp}/mnist-root",
         "corrupt gzip file", setup=_mnist_file("t10k-labels-idx1-ubyte", "gzip"), mnist=True),
    Case("images-not-square-resnet", _tt("data.name=folder", "model.decoder.type=resnet")
         + " --data-root {tmp}/imgs", "needs square images, got 8x12", setup=_images(8, 12)),
    Case("images-too-small", _tt("data.name=folder") + " --data-root {tmp}/imgs",
         "too small for the ResNet encoder", setup=_images(4, 4)),
    Case("images-none", _tt("data.name=folder") + " --data-root {tmp}/imgs", "has no images",
         setup=_mkdir("imgs")),
    Case("image-corrupt", _tt("data.name=folder") + " --data-root {tmp}/imgs",
         "cannot read image", setup=lambda c: (_images(8, 8)(c),
                                               (c.tmp / "imgs" / "bad.png").write_bytes(b"GIF"))),
]


def _snapshot(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("trained") / "run"
    cli_main(["train", "tiny/test", "--out", str(path), "--no-progress", "--set",
              "train.num_threads=1", "--set", "train.max_steps=3"])
    assert (path / "best" / "model.safetensors").exists()
    return path


def test_table_is_large_enough():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_hostile_input_gives_one_line_error(case: Case, tmp_path, trained_run, capsys,
                                            monkeypatch, request):
    ctx = Ctx(tmp=tmp_path, run=tmp_path / "run", new=tmp_path / "new-run")
    shutil.copytree(trained_run, ctx.run)
    if case.mnist:
        ctx.shared = request.getfixturevalue("shared_data")
    if case.setup:
        case.setup(ctx)
    before = _snapshot(ctx.run)
    if case.patch:
        case.patch(monkeypatch, ctx)
    argv = case.argv.format(tmp=ctx.tmp, run=ctx.run, new=ctx.new).split()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli_main(argv)
    monkeypatch.undo()
    out, err = capsys.readouterr()
    assert exc.value.code == 2, (out, err)
    # warnings (e.g. each corrupt checkpoint skipped on the way) may precede the error line
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("maevae: warning: ")]
    assert len(lines) == 1, f"expected one error line on stderr, got:\n{err}"
    assert lines[0].startswith("maevae: error: "), lines[0]
    assert case.expect.format(tmp=ctx.tmp) in lines[0], lines[0]
    assert "Traceback" not in out + err
    print(f"[{case.id}] {lines[0]}")
    assert _snapshot(ctx.run) == before, "the existing run directory was modified"
    if ctx.new.exists():
        assert case.new_may_remain, f"a failed command left {ctx.new} behind"
        if not (ctx.new / "run.json").exists():
            RunDir(ctx.new).check_new()  # the retry is not blocked
