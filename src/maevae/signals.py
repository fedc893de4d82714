"""SIGINT / SIGTERM: noted by a handler, acted upon only where it is safe.

The handler installed by :func:`installed` never interrupts training: it records the first
signal, and the training loop looks at :func:`pending` at its step boundaries, writes one
checkpoint from a consistent snapshot and stops (exit code 128 + signal: 130 for SIGINT,
143 for SIGTERM). Elsewhere (start-up, ``maevae eval``) the first signal raises
``KeyboardInterrupt`` as Python's own SIGINT handler does, except inside a
:func:`deferred` block (a checkpoint or file being written), where it is held until the
block ends. Only the first signal is ever delivered; later ones are recorded and ignored,
so a second Ctrl-C cannot break the save the first one asked for.

"First" is the order in which the signals reached the process: two that arrive while Python
is inside one long C call (a tensor operation, an fsync) would be handled in signal-number
order, so the handler reads the arrival order from Python's wakeup file descriptor.

Handlers can only be installed from the main thread; elsewhere (embedded use in a worker
thread) :func:`installed` changes nothing and Python's defaults stay.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager

from maevae.errors import MaevaeError

__all__ = [
    "Interrupted",
    "SIGNALS",
    "acknowledge",
    "active",
    "deferred",
    "exit_code",
    "flag_only",
    "installed",
    "name",
    "pending",
    "received",
    "record_only",
]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(MaevaeError):
    """Stopped on a signal, with the state saved; the exit code is 128 + the signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class _State:
    def __init__(self):
        self.depth = 0  # nesting of installed()
        self.previous: dict[int, object] = {}
        self.signum: int | None = None  # the first signal received
        self.delivered = False  # the first signal has been acted upon (raised / stopped)
        self.raise_mode = True  # outside training: the first signal raises KeyboardInterrupt
        self.deferring = 0  # nesting of deferred()
        self.wakeup: tuple[int, int] | None = None  # (read, write) end of our wakeup pipe
        self.old_wakeup = -1


_st = _State()


def _handler(signum, frame) -> None:
    if _st.signum is None:
        _st.signum = _first_arrived() or signum
    _deliver()


def _first_arrived() -> int | None:
    """The first SIGINT / SIGTERM in the wakeup pipe (arrival order), if it is in use."""
    if _st.wakeup is None:
        return None
    try:
        data = os.read(_st.wakeup[0], 4096)
    except OSError:  # empty (BlockingIOError) or closed
        return None
    return next((b for b in data if b in SIGNALS), None)


def _open_wakeup() -> None:
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    try:
        old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except (ValueError, OSError):
        old = None
    if old is None or old != -1:  # unavailable, or someone else's (an event loop): keep it
        if old is not None:
            signal.set_wakeup_fd(old)
        os.close(r)
        os.close(w)
        return
    _st.wakeup, _st.old_wakeup = (r, w), old


def _close_wakeup() -> None:
    if _st.wakeup is None:
        return
    signal.set_wakeup_fd(_st.old_wakeup)
    for fd in _st.wakeup:
        os.close(fd)
    _st.wakeup = None


def _deliver() -> None:
    # only inside installed(): a signal recorded by an earlier, finished installed() block
    # is never raised later (e.g. by a library call's deferred() write)
    if (_st.depth > 0 and _st.raise_mode and not _st.deferring and _st.signum is not None
            and not _st.delivered):
        _st.delivered = True
        raise KeyboardInterrupt


def _our_handler_is_installed() -> bool:
    try:
        return signal.getsignal(signal.SIGTERM) is _handler
    except ValueError:
        return False


@contextmanager
def installed(ignore_after_signal: bool = False):
    """Install the handler for SIGINT and SIGTERM (main thread only; nested calls share the
    outermost one). A signal that was ignored when the process started (``nohup``, a
    background job) stays ignored. On exit the previous handlers come back — or, with
    ``ignore_after_signal`` (the command line, whose process then ends), both signals are
    ignored from then on once one was received, so a late second one cannot kill the
    process with another exit code while it shuts down."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    outer = _st.depth == 0
    if outer:
        _st.signum, _st.delivered, _st.raise_mode, _st.deferring = None, False, True, 0
        _st.previous = {}
        _open_wakeup()
        for s in SIGNALS:
            old = signal.getsignal(s)
            if old is signal.SIG_IGN or old is _handler:
                continue
            _st.previous[s] = old
            signal.signal(s, _handler)
    _st.depth += 1
    try:
        yield
    finally:
        _st.depth -= 1
        if outer:
            for s, old in _st.previous.items():
                if ignore_after_signal and _st.signum is not None:
                    signal.signal(s, signal.SIG_IGN)
                else:
                    signal.signal(s, old if old is not None else signal.SIG_DFL)
            _st.previous = {}
            _close_wakeup()


def active() -> bool:
    """Whether signals are being recorded by :func:`installed` (main thread, inside it)."""
    return _st.depth > 0 and _our_handler_is_installed()


def pending() -> int | None:
    """The signal received and not yet acted upon, else None."""
    return None if _st.delivered else _st.signum


def received() -> int | None:
    """The first signal received inside :func:`installed` (acted upon or not)."""
    return _st.signum


def acknowledge() -> int | None:
    """Mark the pending signal as acted upon (no later KeyboardInterrupt); returns it."""
    s = pending()
    _st.delivered = True
    return s


def exit_code(default: int = 130) -> int:
    """128 + the first signal received, else ``default``."""
    return 128 + _st.signum if _st.signum is not None else default


def name(signum: int | None) -> str:
    """The name of signal ``signum`` (``SIGINT``), or ``an interrupt`` for None."""
    return signal.Signals(signum).name if signum else "an interrupt"


@contextmanager
def flag_only():
    """Inside: a signal is only recorded (the caller polls :func:`pending`), never raised."""
    before = _st.raise_mode
    _st.raise_mode = False
    try:
        yield
    finally:
        _st.raise_mode = before


def record_only() -> None:
    """Until the outermost :func:`installed` ends: as in :func:`flag_only` (a command that
    hands over to a loop which polls :func:`pending`)."""
    _st.raise_mode = False


@contextmanager
def deferred():
    """Inside: a signal is held; when the block ends normally a pending one is delivered as
    outside it (KeyboardInterrupt outside training, a flag inside)."""
    _st.deferring += 1
    try:
        yield
    finally:
        _st.deferring -= 1
    _deliver()
