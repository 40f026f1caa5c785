"""One writer per output folder, with real processes: the second is told who holds OUT,
can wait for it, and takes over the lock of a holder killed with SIGKILL."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from imgbatch.output.writer_lock import OutputBusy, output_lock, read_holder

HOLDER = """
import sys, time
from imgbatch.output.writer_lock import output_lock
with output_lock(sys.argv[1], sys.argv[2]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[3]))
"""
LABEL = "flow run fancy-cat (0b6c)"


@contextmanager
def holder(out: Path, seconds: float) -> Iterator[subprocess.Popen]:
    """A child process that holds OUT's lock for `seconds` (or until killed)."""
    argv = [sys.executable, "-c", HOLDER, str(out), LABEL, str(seconds)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_second_writer_is_told_who_holds_the_folder(tmp_path: Path):
    out = tmp_path / "out"
    with holder(out, 60) as proc, pytest.raises(OutputBusy) as busy, output_lock(str(out), "2nd"):
        pytest.fail("two writers held the same output")
    message = str(busy.value)
    assert message.startswith(f"{out} is being written by pid {proc.pid} on host ")
    assert socket.gethostname() in message and f"({LABEL}); wait for it" in message
    assert message.endswith("wait for it or use another out (--out)") and "\n" not in message
    assert " since " in message and ":" in message.split(" since ")[1]


def test_a_waiting_writer_gets_the_folder_when_the_holder_finishes(tmp_path: Path):
    out = tmp_path / "out"
    with holder(out, 1.0):
        t0 = time.monotonic()
        with output_lock(str(out), "waiter", wait=30) as me:
            waited = time.monotonic() - t0
            assert read_holder(str(out)) == me and me["pid"] == os.getpid()
    assert 0.3 < waited < 30
    assert read_holder(str(out)) is None, "a released lock file names no holder"


def test_waiting_is_bounded(tmp_path: Path):
    out = tmp_path / "out"
    with holder(out, 60):
        t0 = time.monotonic()
        busy = pytest.raises(OutputBusy, match=re.escape(LABEL))
        with busy, output_lock(str(out), "w", wait=0.5):
            pass
        assert 0.5 <= time.monotonic() - t0 < 5


def test_the_lock_of_a_killed_holder_is_taken_over(tmp_path: Path):
    out = tmp_path / "out"
    with holder(out, 60) as proc:
        proc.kill()  # SIGKILL: no clean-up ran, the kernel releases the lock
        proc.wait()
        assert read_holder(str(out))["pid"] == proc.pid, "the dead holder's record is still there"
        with output_lock(str(out), "next run") as me:
            assert read_holder(str(out))["label"] == "next run" and me["pid"] == os.getpid()
