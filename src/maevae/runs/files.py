"""Durable, checksummed files of a run directory (nothing here unpickles).

* :func:`write_bytes_durable` — write, flush and fsync one file;
* :func:`atomic_write_bytes` / :func:`atomic_write_text` — temp file, fsync, rename: a crash
  leaves the old or the new file (the one routine for every file of a run directory);
* :func:`signed_json` / :func:`read_signed_json` — JSON that carries the sha256 of its own
  content, so a damaged file that is still valid JSON is detected;
* :func:`tensors_to_bytes` — a safetensors blob of CPU tensors.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import save as st_save

from maevae import signals
from maevae.errors import CheckpointError
from maevae.fsutil import fsync_dir

__all__ = [
    "SELF_SUM",
    "SignedJsonError",
    "atomic_write_bytes",
    "atomic_write_text",
    "read_signed_json",
    "sha256_bytes",
    "signed_json",
    "tensors_to_bytes",
    "write_bytes_durable",
]


def sha256_bytes(data: bytes) -> str:
    """The hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


SELF_SUM = "json_sha256"


def signed_json(obj: dict) -> bytes:
    """JSON carrying the sha256 of its own content (key ``json_sha256``), so a metadata file
    that is damaged but still valid JSON (a flipped digit) is detected too."""
    body = json.dumps(obj, indent=1)
    return json.dumps({**obj, SELF_SUM: sha256_bytes(body.encode())}, indent=1).encode()


class SignedJsonError(ValueError):
    """A JSON file whose embedded checksum does not match its content."""
    pass


def read_signed_json(path: Path) -> dict:
    """Inverse of :func:`signed_json`; OSError / ValueError (SignedJsonError: checksum)."""
    obj = json.loads(path.read_text())
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    digest = obj.pop(SELF_SUM, None)
    if digest != sha256_bytes(json.dumps(obj, indent=1).encode()):
        raise SignedJsonError("checksum mismatch")
    return obj


def write_bytes_durable(path: Path, data: bytes) -> None:
    """Write, flush and fsync one file (in a folder that is renamed into place later)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """Write a small text file atomically (temp file, fsync, rename)."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write one file atomically: a temporary file beside it (``.NAME.tmp-PID``), fsync'ed,
    renamed over ``path``, and the folder fsync'ed; a crash leaves the old or the new file.
    Disk full or no permission: a one-line :class:`CheckpointError`."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with signals.deferred():  # a SIGINT / SIGTERM waits: no temporary file is left behind
        try:
            write_bytes_durable(tmp, data)
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise CheckpointError(f"cannot write {path}: {e.strerror or e}; check free disk "
                                  "space and permissions") from None
        fsync_dir(path.parent)


def tensors_to_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    """``tensors`` as safetensors bytes (detached, on the CPU, contiguous)."""
    return st_save({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()})
