"""The watchdog a command starts beside itself: `python -m imgbatch.cli.watchdog NAME VALUE`.

It blocks until the command's end of its stdin pipe closes (the command exited, however it
died, SIGKILL included), then stops every process whose environment still holds NAME=VALUE
(the processes that command started): SIGTERM, then SIGKILL to those left after 3 s. Its
own small process on purpose: standard library only, Ctrl-C ignored (it must outlive the
command's process group), and it finds processes through /proc (Linux).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator

GRACE_SECONDS = 3.0


def marked(mark: bytes) -> Iterator[int]:
    """Pids (other than this one) whose environment holds `mark` (b"NAME=VALUE")."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if mark in env and int(pid) != os.getpid():
            yield int(pid)


def stop_marked(mark: bytes) -> None:
    """SIGTERM every marked process, then SIGKILL those still there after GRACE_SECONDS."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = list(marked(mark))
        for pid in left:
            with contextlib.suppress(OSError):  # it ended meanwhile
                os.kill(pid, sig)
        deadline = time.monotonic() + GRACE_SECONDS
        while left and any(marked(mark)) and time.monotonic() < deadline:
            time.sleep(0.1)


def main(name: str, value: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdin.buffer.read()
    stop_marked(f"{name}={value}".encode())


if __name__ == "__main__":
    main(*sys.argv[1:3])
