"""Starting and stopping a Prefect server process on 127.0.0.1, one way for every use.

The server runs in a session of its own, so a Ctrl-C at the terminal (which signals the
whole foreground process group) reaches the command, never the server under it: the
command stops its run, then its server. Used by `imgbatch server start` (persistent) and by
every command that finds no server configured (temporary, stopped when the command ends).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"


def api_url(port: int) -> str:
    return f"http://{HOST}:{port}/api"


def free_port() -> int:
    """A loopback port nobody listens on right now (the one helper: servers, emulator, tests)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a just-stopped server's
        try:  # TIME_WAIT sockets do not keep the port
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def spawn(port: int, log: Path, ui: bool = True) -> subprocess.Popen:
    """`prefect server start` in its own session; its UI calls this port's API."""
    env = {**os.environ, "PREFECT_UI_API_URL": api_url(port)}
    if not ui:
        env["PREFECT_UI_ENABLED"] = "false"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "prefect", "server", "start"]
    with open(log, "ab") as out:
        return subprocess.Popen(
            [*command, "--host", HOST, "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_healthy(proc: subprocess.Popen, url: str, timeout: float, log: Path) -> str | None:
    """None once the API answers, else why it never will."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(url):
            return None
        if proc.poll() is not None:
            return f"exited with code {proc.returncode} (see {log})"
        time.sleep(0.25)
    return f"did not answer within {timeout:.0f} s (see {log})"


def stop_process(pid: int, grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it still runs after `grace` seconds."""
    deadline = time.monotonic() + grace
    try:
        os.kill(pid, signal.SIGTERM)
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if _reaped(pid):
                return
            os.kill(pid, 0)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it has exited


def _reaped(pid: int) -> bool:
    """Reap `pid` if it is our exited child (a zombie still answers kill(pid, 0))."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return False
