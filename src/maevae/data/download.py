"""Fetch a file from a list of mirrors, atomically, with checksum verification.

Only ``http``/``https`` URLs are used. The file is streamed to a temporary file next to the
destination, flushed and fsync'ed, checked, and only then renamed over ``dest``; an interrupted
or failed download never leaves a half-written file under the final name, nor the empty
folders it made for it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from maevae.errors import DataError
from maevae.fsutil import fsync_dir

__all__ = ["DEFAULT_TIMEOUT", "download", "file_digest"]

DEFAULT_TIMEOUT = 20.0
_CHUNK = 1 << 20
_USER_AGENT = "maevae-data/0.1 (+python urllib)"


class _ChecksumMismatch(Exception):
    pass


def file_digest(path: str | Path, algorithm: str = "md5") -> str:
    """The hex digest (``md5``, ``sha256``, ...) of a file, read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def missing_folders(folder: str | Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first (what
    ``mkdir(parents=True)`` would create)."""
    out, p = [], Path(folder).absolute()
    while not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return out


def remove_empty(folders: Sequence[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty: undoes a ``mkdir`` that a
    failed download or load made, never touching a folder that holds anything."""
    for d in folders:
        try:
            d.rmdir()
        except OSError:  # not empty (or already gone, or not ours to remove): stop
            return


def _fetch(url: str, dest: Path, md5: str | None, sha256: str | None,
           decompress_check: Callable[[Path], None] | None, timeout: float) -> None:
    """Download one URL to ``dest``; raise _ChecksumMismatch or a network error."""
    req = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h_md5, h_sha = hashlib.md5(), hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(req, timeout=timeout) as resp:
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                out.write(chunk)
                h_md5.update(chunk)
                h_sha.update(chunk)
            out.flush()
            os.fsync(out.fileno())
        if md5 is not None and h_md5.hexdigest() != md5.lower():
            raise _ChecksumMismatch(f"md5 {h_md5.hexdigest()}, expected {md5}")
        if sha256 is not None and h_sha.hexdigest() != sha256.lower():
            got = h_sha.hexdigest()
            raise _ChecksumMismatch(f"sha256 {got[:16]}..., expected {sha256[:16]}...")
        if decompress_check is not None:
            try:
                decompress_check(tmp)
            except DataError as exc:
                raise _ChecksumMismatch(str(exc)) from None
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def download(urls: Sequence[str], dest: str | Path, md5: str | None = None, *,
             sha256: str | None = None,
             decompress_check: Callable[[Path], None] | None = None,
             expected: Sequence[str] | None = None,
             timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Download ``dest`` from the first mirror in ``urls`` that works and verifies.

    ``md5``/``sha256`` check the downloaded bytes; ``decompress_check(tmp_path)`` may check the
    content further (e.g. the md5 of the decompressed data) and must raise DataError on failure.
    ``expected`` names every file the caller needs in ``dest``'s folder; it only improves the
    message raised when no mirror can be reached.
    """
    dest = Path(dest)
    created = missing_folders(dest.parent)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        remove_empty(created)
        raise DataError(
            f"cannot create folder {dest.parent} for {dest.name}: {exc.strerror or exc}; "
            "pass a writable --data-root"
        ) from None
    try:
        return _download_to(urls, dest, md5, sha256, decompress_check, expected, timeout)
    except BaseException:
        remove_empty(created)  # a failed download leaves no empty folders behind
        raise


def _download_to(urls: Sequence[str], dest: Path, md5: str | None, sha256: str | None,
                 decompress_check: Callable[[Path], None] | None,
                 expected: Sequence[str] | None, timeout: float) -> Path:
    """The mirror loop of :func:`download` (``dest``'s folder exists)."""
    failures: list[str] = []
    mismatches: list[str] = []
    for url in urls:
        if not url.lower().startswith(("http://", "https://")):
            failures.append(f"{url}: not an http(s) URL")
            continue
        try:
            _fetch(url, dest, md5, sha256, decompress_check, timeout)
            return dest
        except _ChecksumMismatch as exc:
            mismatches.append(f"{url}: {exc}")
        except urllib.error.HTTPError as exc:
            failures.append(f"{url}: HTTP {exc.code}")
        except (urllib.error.URLError, TimeoutError, ConnectionError,
                http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            failures.append(f"{url}: {reason}")
        except OSError as exc:
            if isinstance(exc, PermissionError) or exc.filename is not None:
                raise DataError(
                    f"cannot write {dest}: {exc.strerror or exc}; pass a writable --data-root"
                ) from None
            failures.append(f"{url}: {exc}")
    if mismatches:
        raise DataError(
            f"downloaded {dest.name} failed its checksum ({'; '.join(mismatches)}); the mirror "
            f"served wrong or corrupt bytes: place a good copy of {dest.name} in {dest.parent} "
            "by hand"
        )
    files = ", ".join(expected) if expected else dest.name
    tried = "; ".join(failures) if failures else "no mirrors configured"
    raise DataError(
        f"could not download {dest.name} ({tried}); this machine seems offline (or the mirrors "
        f"moved): place {files} "
        f"in {dest.parent} by hand (or point --data-root / MAEVAE_DATA at a folder that has them)"
    )
