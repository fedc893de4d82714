"""Terminal output while progress bars may be open: log lines, warnings, bars, stages.

Every line goes through ``tqdm.write``, which clears the open bars, writes the line and
draws the bars again below it, so a line is never printed onto a bar's line. :func:`bar`
makes every bar the same way (labelled, removed when done, off with ``progress=False``);
:func:`stage` frames a step that cannot report increments (t-SNE, sampling) with a start
line and a "done in X s" line.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tqdm.auto import tqdm

__all__ = ["Timer", "bar", "fmt_s", "say", "stage", "warn"]


def say(msg: str = "") -> None:
    """Print one log line to stdout without breaking an open progress bar."""
    tqdm.write(str(msg))


def warn(msg: str) -> None:
    """Print ``maevae: warning: <msg>`` to stderr without breaking an open progress bar."""
    tqdm.write(f"maevae: warning: {msg}", file=sys.stderr)


def bar(total: int, desc: str, progress: bool = True, unit: str = "it", initial: int = 0):
    """A progress bar labelled ``desc`` over ``total`` units (a ``tqdm``; use it as a context
    manager or close it). It disappears when closed; ``progress=False`` draws nothing."""
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=not progress,
                leave=False, dynamic_ncols=True)


def fmt_s(s: float) -> str:
    """Seconds for a log line: two decimals under 10 s, one above."""
    return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"


@dataclass
class Timer:
    """What :func:`stage` yields: ``seconds`` is set when the stage ends."""

    seconds: float = 0.0


@contextlib.contextmanager
def stage(start: str, log: Callable[[str], None] = say, done: str = "done") -> Iterator[Timer]:
    """Log ``"<start> ..."`` before the block and ``"  <done> in X s"`` after it (not when
    it raises); the yielded :class:`Timer` then holds the block's wall time."""
    log(f"{start} ...")
    timer = Timer()
    t0 = time.perf_counter()
    yield timer
    timer.seconds = time.perf_counter() - t0
    log(f"  {done} in {fmt_s(timer.seconds)}")
