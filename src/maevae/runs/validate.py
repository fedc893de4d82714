"""Checking what is read from a run directory: one helper for every file and field.

Every reader of a run-directory file (``run.json``, ``metrics.jsonl``, ``config.yaml``,
``checkpoints/*/state.json``, ``best/meta.json``; ``eval.json`` has its own schema in
:mod:`maevae.runs.results`) decodes through :func:`read_text` / :func:`read_json_object` and
checks each field it uses with :func:`require`. A wrong file or field is one line naming
the file, the run and the field::

    run.json in runs/mae: field image_shape must be a list of 3 positive integers (got str)

raised as :class:`~maevae.errors.CheckpointError` (exit code 2 from the CLI).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maevae.errors import CheckpointError

__all__ = ["KINDS", "MISSING", "file_error", "read_json_object", "read_text", "require"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()  # the default of :func:`require` for a field that must be there


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# kind -> (test, what the field must be)
KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int": (_int, "an integer"),
    "nonneg_int": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "number": (_num, "a number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "dict": (lambda v: isinstance(v, dict), "an object"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "str_list": (lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
                 "a list of strings"),
    "str_dict": (lambda v: isinstance(v, dict) and all(isinstance(s, str) for s in v.values()),
                 "an object of strings"),
    "image_shape": (lambda v: isinstance(v, list) and len(v) == 3
                    and all(_int(d) and d > 0 for d in v), "a list of 3 positive integers"),
}


def _file_records(v: Any) -> bool:
    """A list of data-file records (:mod:`maevae.data.provenance`)."""
    return isinstance(v, list) and all(
        isinstance(r, dict) and isinstance(r.get("path"), str) and _int(r.get("size"))
        and r["size"] >= 0 and isinstance(r.get("sha256"), str)
        and len(r["sha256"]) == 64 for r in v)


KINDS["file_records"] = (_file_records, "a list of {path, size, sha256} records")


def _where(file: str | Path, run: str | Path | None) -> str:
    return f"{file} in {run}" if run is not None else str(file)


def file_error(file: str | Path, run: str | Path | None, problem: str) -> CheckpointError:
    """The one-line error for ``file`` of ``run``: ``"FILE in RUN: PROBLEM"``."""
    return CheckpointError(f"{_where(file, run)}: {problem}")


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def require(obj: dict, field: str, kind: str, file: str | Path,
            run: str | Path | None = None, default: Any = MISSING) -> Any:
    """``obj[field]`` if it is of ``kind`` (see :data:`KINDS`); a missing field gives
    ``default`` when one is given, else, like a wrong type, a one-line CheckpointError
    naming ``file``, ``run`` and ``field``."""
    test, what = KINDS[kind]
    if field not in obj:
        if default is not MISSING:
            return default
        raise file_error(file, run, f"field {field} is missing (it must be {what})")
    v = obj[field]
    if not test(v):
        raise file_error(file, run, f"field {field} must be {what} (got {_type_name(v)})")
    return v


def read_text(path: Path, run: str | Path | None = None) -> str:
    """The UTF-8 text of a run file; a one-line CheckpointError when it cannot be read or is
    not UTF-8 (a missing file raises FileNotFoundError, for the caller to word)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise file_error(path.name, run, f"cannot be read ({e.strerror or e})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise file_error(path.name, run, f"is not UTF-8 text (byte {e.start}); restore it "
                                         "from a backup") from None


def read_json_object(path: Path, run: str | Path | None = None) -> dict:
    """A run file that holds one JSON object, decoded and checked (see :func:`read_text`)."""
    text = read_text(path, run)
    try:
        obj = json.loads(text)
    except ValueError:
        raise file_error(path.name, run, "is corrupt (not JSON); restore it from a backup"
                         ) from None
    if not isinstance(obj, dict):
        raise file_error(path.name, run, f"must hold a JSON object (got {_type_name(obj)})")
    return obj
