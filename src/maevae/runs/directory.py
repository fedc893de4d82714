"""Run directories and crash-safe checkpoints (safetensors + JSON; nothing is unpickled).

Layout of a run directory::

    config.yaml            the fully resolved config
    run.json               format version, maevae version, image shape, data notes, the
                           data root and the data files' sizes and sha256 (older runs: none)
    metrics.jsonl          one JSON object per logged step / epoch
    checkpoints/step-00000600/   model.safetensors, ema.safetensors, optim.safetensors,
                                 state.json (counters, schedule, sha256 of every file
                                 and of its own content)
    best/                  model.safetensors (EMA weights) + meta.json (with sha256s)
    eval.json              written by ``maevae eval`` (schema: :mod:`maevae.runs.results`)

Every checkpoint is written to a temporary folder, each file flushed and fsync'ed, then
renamed into place (and the parent folder fsync'ed), so a crash leaves either the old or
the new checkpoint, never a half-written one. On load every file's sha256 is checked; a
corrupt newest checkpoint is reported in one line and the previous valid one is used.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import load as st_load

from maevae import __version__, console, signals
from maevae.errors import CheckpointError
from maevae.fsutil import fsync_dir
from maevae.runs import files as run_files  # called through the module: one patch reaches all
from maevae.runs.files import SignedJsonError, read_signed_json, sha256_bytes, signed_json
from maevae.runs.validate import file_error, read_text, require

__all__ = ["CKPT_PREFIX", "RUN_FORMAT_VERSION", "RunDir"]

# Run directories record this; a run written by an incompatible format is refused on load.
RUN_FORMAT_VERSION = 1
CKPT_PREFIX = "step-"


class RunDir:
    """A run directory: config, metrics, checkpoints, best model, evaluation."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.ckpt_dir = self.path / "checkpoints"
        self.best_dir = self.path / "best"

    # ----------------------------------------------------------------- creation / metadata
    def resume_command(self, data_root: str | Path | None = None) -> str:
        """The command that continues this run, as hints print it. A run that records its
        data (run.json ``data_files``) needs nothing more; one written before runs did gets
        ``--data-root`` too when ``data_root``, the root it is trained from now, is known."""
        cmd = f"maevae train --resume {shlex.quote(str(self.path))}"
        if data_root is not None:
            try:
                meta = json.loads((self.path / "run.json").read_text())
                legacy = isinstance(meta, dict) and "data_files" not in meta
            except (OSError, ValueError):
                legacy = False
            if legacy:
                cmd += f" --data-root {shlex.quote(str(data_root))}"
        return cmd

    def _is_interrupted_create(self) -> bool:
        """What a ``create`` killed before run.json was written leaves behind: such a folder
        holds no run yet and may be used again."""
        if (self.path / "run.json").exists():
            return False
        for p in self.path.iterdir():
            if p.name == "checkpoints" and p.is_dir() and not any(p.iterdir()):
                continue
            if p.name == "config.yaml" or (p.name.startswith((".config.yaml.tmp-",
                                                              ".run.json.tmp-"))):
                continue
            return False
        return True

    def check_new(self) -> None:
        """CheckpointError unless the folder is absent, empty, or the leftover of a new run
        that was killed before it was set up (nothing of another run is ever overwritten)."""
        if self.path.exists() and not self.path.is_dir():
            raise CheckpointError(f"--out {self.path} is a file, not a folder; choose a new "
                                  "--out")
        anc = self.path.absolute()
        while not anc.exists() and anc != anc.parent:
            anc = anc.parent
        if not anc.is_dir():
            raise CheckpointError(f"cannot create run directory {self.path}: {anc} is a file, "
                                  "not a folder; choose another --out")
        if not os.access(anc, os.W_OK | os.X_OK):
            raise CheckpointError(f"cannot create run directory {self.path}: {anc} is not "
                                  "writable; choose a writable --out")
        if self.path.is_dir() and any(self.path.iterdir()) and not self._is_interrupted_create():
            raise CheckpointError(f"run directory {self.path} is not empty (it holds another run"
                                  "); choose a new --out, or continue it with "
                                  f"`{self.resume_command()}`")

    def create(self, config_yaml: str, meta: dict) -> None:
        """Create the run directory with ``config.yaml`` and ``run.json`` (``meta``); refuses a
        folder that holds another run. SIGINT / SIGTERM wait until both are written."""
        with signals.deferred():  # a signal waits until config.yaml and run.json are written
            self._create(config_yaml, meta)

    def _create(self, config_yaml: str, meta: dict) -> None:
        self.check_new()
        try:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CheckpointError(f"cannot create run directory {self.path}: "
                                  f"{e.strerror or e}; choose a writable --out") from None
        if not os.access(self.path, os.W_OK):
            raise CheckpointError(f"run directory {self.path} is not writable; choose a "
                                  "writable --out")
        run_files.atomic_write_text(self.path / "config.yaml", config_yaml)
        meta = {"format_version": RUN_FORMAT_VERSION, "maevae_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **meta}
        run_files.atomic_write_text(self.path / "run.json", json.dumps(meta, indent=2))

    def meta(self) -> dict:
        """``run.json`` as a dict; a missing, corrupt or malformed file raises
        :class:`~maevae.errors.CheckpointError`."""
        p = self.path / "run.json"
        if not self.path.is_dir():
            raise CheckpointError(f"run directory {self.path} does not exist")
        if not p.exists():
            raise CheckpointError(f"{self.path} is not a maevae run directory (no run.json); "
                                  "pass the folder given to `maevae train --out`")
        text = read_text(p, self.path)
        try:
            meta = json.loads(text)
        except ValueError:
            raise CheckpointError(f"{p} is corrupt (not JSON); the run directory cannot be "
                                  "used") from None
        if not isinstance(meta, dict):
            raise file_error("run.json", self.path, "must hold a JSON object (got "
                             f"{type(meta).__name__})")
        version = meta.get("format_version")
        if version != RUN_FORMAT_VERSION:
            raise CheckpointError(f"run directory {self.path} was written by an incompatible "
                                  f"maevae (run format {version!r}, this version reads "
                                  f"{RUN_FORMAT_VERSION}); retrain or use a matching maevae")
        require(meta, "image_shape", "image_shape", "run.json", self.path)
        for name, kind in (("dataset", "str"), ("data_notes", "str_list"), ("sizes", "list"),
                           ("data_root", "str"), ("data_files", "file_records")):
            require(meta, name, kind, "run.json", self.path, default=None)
        return meta

    def config_yaml(self) -> str:
        """The text of the run's ``config.yaml`` (UTF-8 checked)."""
        p = self.path / "config.yaml"
        if not p.exists():
            raise CheckpointError(f"{p} is missing; the run directory is incomplete")
        return read_text(p, self.path)

    # ------------------------------------------------------------------------- metrics
    def append_metrics(self, row: dict) -> None:
        """Append one row to ``metrics.jsonl``."""
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def read_metrics(self) -> list[dict]:
        """The rows of metrics.jsonl. A last line without its newline that does not parse is
        a row cut by a crash and is dropped; any other line that is not a JSON object with
        ``kind`` (string) and ``step`` (integer >= 0) is a one-line CheckpointError naming
        the line."""
        p = self.path / "metrics.jsonl"
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise file_error("metrics.jsonl", self.path, f"cannot be read ({e.strerror or e})"
                             ) from None
        lines = data.split(b"\n")
        torn = lines.pop()  # b"" when the file ends with a newline
        rows = []
        for no, raw in enumerate(lines, 1):
            if raw.strip():
                rows.append(self._metrics_row(raw, no))
        if torn.strip():
            try:
                rows.append(self._metrics_row(torn, len(lines) + 1))
            except CheckpointError:
                pass  # a row cut by a crash: dropped (truncate_metrics rewrites the file)
        return rows

    def _metrics_row(self, raw: bytes, no: int) -> dict:
        where = f"metrics.jsonl line {no}"
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise file_error(where, self.path, "is not UTF-8 text; delete the line or "
                             "restore the file") from None
        except ValueError:
            raise file_error(where, self.path, "is not JSON; delete the line or restore the "
                             "file") from None
        if not isinstance(row, dict):
            raise file_error(where, self.path, f"must be a JSON object (got "
                             f"{'null' if row is None else type(row).__name__}); delete the "
                             "line or restore the file")
        require(row, "kind", "str", where, self.path)
        require(row, "step", "nonneg_int", where, self.path)
        return row

    def truncate_metrics(self, step: int) -> None:
        """On resume: drop rows logged after the checkpoint being resumed."""
        rows = [r for r in self.read_metrics() if r["step"] <= step]
        run_files.atomic_write_text(self.path / "metrics.jsonl",
                                    "".join(json.dumps(r) + "\n" for r in rows))

    # --------------------------------------------------------------------- checkpoints
    def save_checkpoint(self, step: int, files: dict[str, dict[str, torch.Tensor]], state: dict,
                        keep: int, drop: Path | None = None) -> Path:
        """Write checkpoint ``step`` (SIGINT / SIGTERM are held until it is complete), then
        remove ``drop`` (a checkpoint it supersedes, e.g. one written on a signal) and all
        but the newest ``keep``."""
        with signals.deferred():
            return self._save_checkpoint(step, files, state, keep, drop)

    def _save_checkpoint(self, step: int, files: dict[str, dict[str, torch.Tensor]],
                         state: dict, keep: int, drop: Path | None) -> Path:
        final = self.checkpoint_path(step)
        tmp = self.ckpt_dir / f".tmp-{CKPT_PREFIX}{step:08d}-{os.getpid()}"
        old = self.ckpt_dir / f".old-{CKPT_PREFIX}{step:08d}-{os.getpid()}"
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            sums = {}
            for name, tensors in files.items():
                data = run_files.tensors_to_bytes(tensors)
                run_files.write_bytes_durable(tmp / f"{name}.safetensors", data)
                sums[f"{name}.safetensors"] = sha256_bytes(data)
            body = signed_json({**state, "step": step, "sha256": sums})
            run_files.write_bytes_durable(tmp / "state.json", body)
            fsync_dir(tmp)
            if final.exists():  # re-saving a step: move the old copy aside, never delete first
                shutil.rmtree(old, ignore_errors=True)
                os.rename(final, old)
            os.rename(tmp, final)
            fsync_dir(self.ckpt_dir)
            shutil.rmtree(old, ignore_errors=True)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if old.exists() and not final.exists():
                os.rename(old, final)  # keep the previous copy of this step
            raise CheckpointError(f"cannot write checkpoint in {self.ckpt_dir}: "
                                  f"{e.strerror or e}; free disk space or fix permissions, then "
                                  f"resume with `{self.resume_command()}`") from None
        if drop is not None and drop != final and drop.parent == self.ckpt_dir:
            shutil.rmtree(drop, ignore_errors=True)
        self._prune(keep, final)
        return final

    def _prune(self, keep: int, newest: Path) -> None:
        # count only checkpoints up to the one just written: a corrupt "newer" one left from
        # before a fallback must not push valid ones out (it is replaced when training gets
        # there again)
        ckpts = [p for p in self.checkpoint_paths() if p.name <= newest.name]
        for old in ckpts[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        self._recover_interrupted()

    def _recover_interrupted(self) -> None:
        """Undo what a process killed inside a save left behind: its half-written temporary
        folders are dropped; a checkpoint or best model it had moved aside but not yet
        replaced is put back. Only the process that trains the run calls this (a concurrent
        reader must not touch another process's temporary folders)."""
        mine = f"-{os.getpid()}"
        for tmp in [*self.ckpt_dir.glob(".tmp-*"), *self.path.glob(".best.tmp-*")]:
            if not tmp.name.endswith(mine):
                shutil.rmtree(tmp, ignore_errors=True)
        for old in sorted([*self.ckpt_dir.glob(".old-*"), *self.path.glob(".best.old-*")]):
            if old.name.endswith(mine):
                continue
            if old.name.startswith(".best."):
                target = self.best_dir
            else:  # .old-step-00000600-<pid>
                target = self.ckpt_dir / old.name.removeprefix(".old-").rsplit("-", 1)[0]
            if not target.exists():
                try:
                    os.rename(old, target)
                    continue
                except OSError:
                    pass
            shutil.rmtree(old, ignore_errors=True)

    def checkpoint_path(self, step: int) -> Path:
        """The folder of the checkpoint at optimizer step ``step``."""
        return self.ckpt_dir / f"{CKPT_PREFIX}{step:08d}"

    def checkpoint_paths(self) -> list[Path]:
        """The run's checkpoint folders, oldest first."""
        if not self.ckpt_dir.is_dir():
            return []
        return sorted(p for p in self.ckpt_dir.iterdir()
                      if p.is_dir() and p.name.startswith(CKPT_PREFIX))

    @staticmethod
    def read_checkpoint(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
        """Verify and load one checkpoint folder; CheckpointError if anything is off."""
        try:
            state = read_signed_json(path / "state.json")
        except SignedJsonError:
            raise CheckpointError(f"checkpoint {path.name}: state.json is corrupted (checksum "
                                  "mismatch)") from None
        except (OSError, ValueError):
            raise CheckpointError(f"checkpoint {path.name}: state.json missing or corrupt"
                                  ) from None
        sums = state.get("sha256")
        if not isinstance(sums, dict) or not sums:
            raise CheckpointError(f"checkpoint {path.name}: no checksums in state.json")

        files = {}
        for fname, digest in sums.items():
            if "/" in fname or not fname.endswith(".safetensors"):
                raise CheckpointError(f"checkpoint {path.name}: unexpected file {fname!r}")
            try:
                data = (path / fname).read_bytes()
            except OSError:
                raise CheckpointError(f"checkpoint {path.name}: {fname} is missing") from None
            if sha256_bytes(data) != digest:
                raise CheckpointError(f"checkpoint {path.name}: {fname} is truncated or "
                                      "corrupted (checksum mismatch)")
            try:
                files[fname.removesuffix(".safetensors")] = st_load(data)
            except Exception:
                raise CheckpointError(f"checkpoint {path.name}: {fname} is not a valid "
                                      "safetensors file") from None
        return files, state

    def _check_state(self, state: dict, path: Path) -> None:
        """The fields of a state.json whose checksums verify: one line naming the field when
        one is missing or of the wrong type (a crafted file, or another maevae's)."""
        state_file = f"checkpoints/{path.name}/state.json"
        try:
            require(state, "step", "nonneg_int", state_file, self.path)
            for name in ("counters", "schedule", "ema"):
                require(state, name, "dict", state_file, self.path)
            require(state, "optim_groups", "list", state_file, self.path)
        except CheckpointError as e:
            raise CheckpointError(f"{e}; it is not what this maevae writes (crafted, or from "
                                  "another version): restore the run from a backup") from None

    def load_latest_checkpoint(self, warn=None) -> tuple[dict, dict] | None:
        """The newest checkpoint that verifies; corrupt newer ones are reported (one line
        each) and skipped. None when there is no checkpoint at all (a run killed before its
        first one); CheckpointError when there are checkpoints but none verifies — starting
        over silently could throw away days of training."""
        warn = warn or console.warn
        self._recover_interrupted()
        paths = self.checkpoint_paths()
        for path in reversed(paths):
            try:
                found = self.read_checkpoint(path)
            except CheckpointError as e:
                warn(f"{e}; falling back to the previous checkpoint")
                continue
            self._check_state(found[1], path)  # verified but wrong: refused, no fallback
            return found
        if paths:
            raise CheckpointError(f"none of the {len(paths)} checkpoint(s) in {self.ckpt_dir} "
                                  "is valid (all truncated or corrupted); restore them from a "
                                  f"backup, or delete {self.ckpt_dir} to train from the start")
        return None

    # -------------------------------------------------------------------------- best
    def save_best(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        """Replace ``best/`` with the model ``tensors`` and ``meta`` (atomically; SIGINT /
        SIGTERM wait until it is done)."""
        with signals.deferred():  # SIGINT / SIGTERM wait until best/ is replaced
            self._save_best(tensors, meta)

    def _save_best(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        data = run_files.tensors_to_bytes(tensors)
        tmp = self.path / f".best.tmp-{os.getpid()}"
        old = self.path / f".best.old-{os.getpid()}"
        self._recover_interrupted()
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            run_files.write_bytes_durable(tmp / "model.safetensors", data)
            body = signed_json({**meta, "sha256": sha256_bytes(data)})
            run_files.write_bytes_durable(tmp / "meta.json", body)
            fsync_dir(tmp)
            if self.best_dir.exists():
                os.rename(self.best_dir, old)
            os.rename(tmp, self.best_dir)
            shutil.rmtree(old, ignore_errors=True)
            fsync_dir(self.path)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if old.exists() and not self.best_dir.exists():
                os.rename(old, self.best_dir)  # keep the previous best model
            raise CheckpointError(f"cannot write the best model in {self.path}: "
                                  f"{e.strerror or e}; free disk space or fix permissions"
                                  ) from None

    def load_best(self) -> tuple[dict[str, torch.Tensor], dict]:
        """The best model's tensors and ``best/meta.json``, checked against their checksums;
        a missing or damaged ``best/`` raises :class:`~maevae.errors.CheckpointError`."""
        meta_p, model_p = self.best_dir / "meta.json", self.best_dir / "model.safetensors"
        if not model_p.exists() or not meta_p.exists():
            raise CheckpointError(f"{self.path} has no trained model yet (best/ is missing); "
                                  f"train it first or resume with `{self.resume_command()}`")
        try:
            meta = read_signed_json(meta_p)
        except SignedJsonError:
            raise CheckpointError(f"{meta_p} is truncated or corrupted (checksum mismatch); "
                                  "retrain or restore it from a backup") from None
        except (OSError, ValueError):
            raise CheckpointError(f"{meta_p} is corrupt (not JSON)") from None
        require(meta, "sha256", "str", "best/meta.json", self.path)
        for name in ("epoch", "step"):
            require(meta, name, "int", "best/meta.json", self.path, default=None)
        require(meta, "val", "dict", "best/meta.json", self.path, default=None)
        data = model_p.read_bytes()
        if sha256_bytes(data) != meta.get("sha256"):
            raise CheckpointError(f"{model_p} is truncated or corrupted (checksum mismatch); "
                                  "retrain or restore it from a backup")
        try:
            return st_load(data), meta
        except Exception:
            raise CheckpointError(f"{model_p} is not a valid safetensors file") from None
