"""The watchdog as a command starts it: when the command's pipe closes, the processes marked
as the command's stop (an ignored SIGTERM too, by SIGKILL), and nothing else does."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

NAME = "IMGBATCH_TEST_OWNER"
SLEEPS = "import time; time.sleep(60)"
IGNORES_SIGTERM = f"import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); {SLEEPS}"


def child(code: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **env})


def gone(proc: subprocess.Popen, timeout: float) -> bool:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


@pytest.mark.skipif(not os.path.exists("/proc/self/environ"), reason="the watchdog needs /proc")
def test_closing_the_pipe_stops_the_marked_processes_only():
    value = str(os.getpid())
    marked = child(SLEEPS, **{NAME: value})
    stubborn = child(IGNORES_SIGTERM, **{NAME: value})
    other = child(SLEEPS, **{NAME: "someone-else"})
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "imgbatch.cli.watchdog", NAME, value], stdin=subprocess.PIPE
    )
    try:
        time.sleep(0.5)  # the children are up and the watchdog is waiting on its pipe
        assert marked.poll() is None and stubborn.poll() is None
        watchdog.stdin.close()  # what the command's exit does, however it died
        assert gone(marked, 10) and gone(stubborn, 15)
        assert watchdog.wait(20) == 0
        assert other.poll() is None
    finally:
        for proc in (marked, stubborn, other, watchdog):
            proc.kill()
            proc.wait()
