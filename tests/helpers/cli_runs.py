"""The `imgbatch` command run as a user runs it: a subprocess, a fresh PREFECT_HOME, no server.

Several runs can be started at once and awaited together, so tests whose bound is a minute
or two of waiting on a silent endpoint cost that minute once, not once per case.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

# The final line of a failed command: "imgbatch CMD: failed: ..." or "imgbatch CMD: error: ...".
ERROR_LINE = re.compile(r"^imgbatch \w+: (failed|error): ")


@dataclass
class Finished:
    """What a user saw: exit code, wall time, stdout, stderr."""

    returncode: int
    seconds: float
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        lines = (self.stdout + "\n" + self.stderr).splitlines()
        return [line for line in lines if ERROR_LINE.match(line)]

    @property
    def both(self) -> str:
        return f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


class Started:
    """A running command; a thread collects its output and notes when it ended, so runs
    awaited one after the other each get their own wall time."""

    def __init__(self, proc: subprocess.Popen, home: tempfile.TemporaryDirectory) -> None:
        self.proc, self.home, self.t0 = proc, home, time.monotonic()
        self.output: tuple[str, str] = ("", "")
        self.ended = 0.0
        self.thread = threading.Thread(target=self._collect, daemon=True)
        self.thread.start()

    def _collect(self) -> None:
        self.output = self.proc.communicate()
        self.ended = time.monotonic()

    def wait(self, timeout: float) -> Finished:
        """What the user saw; a run still going after `timeout` seconds is killed."""
        self.thread.join(max(0.0, self.t0 + timeout - time.monotonic()))
        if self.thread.is_alive():
            self.proc.kill()
            self.thread.join()
        self.home.cleanup()
        return Finished(self.proc.returncode, self.ended - self.t0, *self.output)


def start(args: list[str], env: dict[str, str] | None = None) -> Started:
    """`imgbatch ARGS` in a subprocess with a fresh PREFECT_HOME and no PREFECT_ settings."""
    home = tempfile.TemporaryDirectory(prefix="prefect-home-")
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    base.pop("STORAGE_EMULATOR_HOST", None)
    full = {**base, "PREFECT_HOME": home.name, **(env or {})}
    argv = [sys.executable, "-m", "imgbatch.cli.main", *args]
    proc = subprocess.Popen(
        argv,
        env=full,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Started(proc, home)
