"""Which data files a run was trained on: paths, sizes and sha256, to notice changes later.

:func:`describe_files` turns the files an :class:`~maevae.data.base.ImageSplits` was read from
into records ``{"path", "size", "sha256"}``; ``path`` is relative to the data root (POSIX
separators) when the file lies under it, else absolute, so data moved to another root as a
whole still matches. An image folder is one record: ``path`` is the folder, ``files`` the
number of images, ``size`` their total bytes and ``sha256`` the digest of the sorted lines
``"<path in the folder>\\t<sha256 of the file>\\n"``. scikit-learn's digits read no files and
give no records.

:func:`changed_files` compares the records a run holds with those of the data found now.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from maevae.data.base import ImageSplits
from maevae.data.download import file_digest

__all__ = ["changed_files", "describe_files", "folder_digest"]


def _rel(path: Path, base: Path | None) -> str:
    """``path`` relative to ``base`` (``"."`` for ``base`` itself) when under it, else as is."""
    if base is not None:
        try:
            return path.relative_to(base).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def folder_digest(folder: Path, files: list[Path]) -> str:
    """sha256 over the sorted ``"<path in folder>\\t<sha256>\\n"`` lines of ``files``."""
    lines = sorted(f"{_rel(p, folder)}\t{file_digest(p, 'sha256')}\n" for p in files)
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def describe_files(data: ImageSplits) -> list[dict]:
    """The records (see module docstring) of the files ``data`` was read from."""
    if data.folder is not None:
        return [{"path": _rel(data.folder, data.root), "files": len(data.files),
                 "size": sum(p.stat().st_size for p in data.files),
                 "sha256": folder_digest(data.folder, data.files)}]
    return [{"path": _rel(p, data.root), "size": p.stat().st_size,
             "sha256": file_digest(p, "sha256")} for p in data.files]


def changed_files(recorded: list[dict], current: list[dict]) -> list[str]:
    """One line per recorded file that was not read this time or whose size or sha256
    differ from the file read now (empty when the data is the same)."""
    now = {r["path"]: r for r in current}
    out = []
    for rec in recorded:
        cur = now.get(rec["path"])
        if cur is None:
            out.append(f"data file {rec['path']} was not read this time (the data found now "
                       f"is {', '.join(sorted(now)) or 'no files'})")
        elif (cur["sha256"], cur["size"]) != (rec["sha256"], rec["size"]):
            out.append(f"data file {rec['path']} has changed (sha256 {cur['sha256'][:12]}..., "
                       f"{cur['size']} bytes; recorded {rec['sha256'][:12]}..., "
                       f"{rec['size']} bytes)")
    return out
