"""Run ``maevae`` in a subprocess for the kill harness (tests/test_reliability_kill.py).

Usage: python train_worker.py ARGS...  (the arguments of ``maevae``)

With MAEVAE_TEST_SLOW_WRITE=SECONDS every durable write in a checkpoint is slowed down like
a slow disk: half the bytes are written and flushed, the process sleeps, then the rest is
written and fsync'ed. That widens the window in which a SIGKILL lands in the middle of a
checkpoint (a half-written file in a temporary folder). Nothing else is changed, so the
numbers are exactly those of ``maevae`` itself. The hook lives here, not in the package.
"""

from __future__ import annotations

import os
import sys
import time


def _install_slow_write(seconds: float) -> None:
    from maevae.runs import files as checkpoint

    def slow_write_bytes_durable(path, data: bytes) -> None:
        with open(path, "wb") as f:
            half = len(data) // 2
            f.write(data[:half])
            f.flush()
            time.sleep(seconds)
            f.write(data[half:])
            f.flush()
            os.fsync(f.fileno())

    checkpoint.write_bytes_durable = slow_write_bytes_durable


def main() -> None:
    slow = float(os.environ.get("MAEVAE_TEST_SLOW_WRITE", "0") or 0)
    if slow > 0:
        _install_slow_write(slow)
    from maevae.cli import main as cli_main

    cli_main(sys.argv[1:])


if __name__ == "__main__":
    main()
