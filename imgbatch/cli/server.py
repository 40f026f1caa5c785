"""`imgbatch server start|stop|status`: a persistent local Prefect server (with its UI).

A temporary server costs every command its start-up; one started here is reused by every
later command without exporting anything: `start` writes PREFECT_API_URL into the active
Prefect profile (under PREFECT_HOME) and `stop` removes it. Only 127.0.0.1 is served.
The server's process id is kept where `prefect server stop` also finds it. With
`--postgres` its database is a PostgreSQL started (and later stopped) here, its cluster in
PREFECT_HOME/postgres: SQLite refuses a write that starts after a read while others commit,
so during a big run the UI's Run button gets 503s (docs/decisions/postgres-for-concurrent-runs.md).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from imgbatch.cli import local_server, prefect_setup
from imgbatch.cli.local_server import HOST

START_TIMEOUT = 600.0  # a first start builds the database; a loaded machine is slow


def register(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name,
        help="start, stop or check a local Prefect server (with its UI) that every "
        "later command uses",
        description="A persistent Prefect server on 127.0.0.1: faster runs and a UI. "
        "`start` makes later imgbatch commands use it (through the Prefect profile); "
        "`stop` undoes that.",
    )
    actions = p.add_subparsers(dest="action", required=True)
    start_p = actions.add_parser("start", help="start it in the background and wait for it")
    start_p.add_argument("--port", type=int, default=4200, help="port (default: 4200)")
    start_p.add_argument(
        "--postgres",
        action="store_true",
        help="keep the server's database in a PostgreSQL this command starts (and `stop` "
        "stops), data in PREFECT_HOME/postgres: for runs created while big runs execute "
        "(needs `pip install 'imgbatch[postgres]'` or Debian's postgresql)",
    )
    actions.add_parser("stop", help="stop it; later commands use a temporary server")
    actions.add_parser("status", help="say whether it runs, and where (exit 1 if not)")
    p.set_defaults(run=run, runs_flows=False)


def run(args: argparse.Namespace, params: None) -> int:
    """Dispatch to start, stop or status; Prefect's defaults are set first, as for flows."""
    prefect_setup.set_defaults()
    if args.action == "start":
        return start(args.port, args.postgres)
    return stop() if args.action == "stop" else status()


def pid_file() -> Path:
    return prefect_setup.prefect_home() / "server.pid"


def log_file() -> Path:
    return prefect_setup.prefect_home() / "imgbatch-server.log"


def postgres_data() -> Path:
    return prefect_setup.prefect_home() / "postgres"


def running_pid() -> int | None:
    """The recorded server's process id, if that process still exists."""
    try:
        pid = int(pid_file().read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def launch(port: int, database: str | None = None) -> subprocess.Popen:
    """The persistent server, recorded where `prefect server stop` also finds it."""
    proc = local_server.spawn(port, log_file(), database=database)
    pid_file().write_text(str(proc.pid))
    return proc


def set_profile_url(api_url: str | None) -> None:
    """PREFECT_API_URL in the active Prefect profile: set, or removed when None."""
    from prefect.settings import PREFECT_API_URL, update_current_profile

    update_current_profile({PREFECT_API_URL: api_url})


def start_database() -> str:
    """PostgreSQL for the server (on a free port, data in PREFECT_HOME/postgres); its URL.
    A database the user configured is theirs: never replaced."""
    if configured := prefect_setup.setting(prefect_setup.DATABASE_URL):
        raise local_server.PostgresUnavailable(
            f"{prefect_setup.DATABASE_URL} is set ({configured.split('@')[-1]}); "
            "--postgres would replace it: unset it, or start without --postgres"
        )
    port = local_server.free_port()
    log = prefect_setup.prefect_home() / "imgbatch-postgres.log"
    local_server.start_postgres(postgres_data(), port, log, START_TIMEOUT)
    return local_server.postgres_url(port)


def start(port: int, postgres: bool = False) -> int:
    """Start the server (unless it runs), wait for its API, and point the profile at it."""
    api_url = local_server.api_url(port)
    if running_pid() and local_server.healthy(prefect_setup.setting("PREFECT_API_URL") or api_url):
        print(f"imgbatch server: already running at {prefect_setup.setting('PREFECT_API_URL')}")
        return 0
    if not local_server.port_free(port):
        print(
            f"imgbatch server: failed: port {port} is in use; choose one with --port",
            file=sys.stderr,
        )
        return 1
    try:
        database = start_database() if postgres else None
    except local_server.PostgresUnavailable as exc:
        print(f"imgbatch server: failed: {exc}", file=sys.stderr)
        return 1
    proc = launch(port, database)
    if problem := local_server.wait_healthy(proc, api_url, START_TIMEOUT, log_file()):
        proc.kill()
        proc.wait()
        pid_file().unlink(missing_ok=True)
        local_server.stop_postgres(postgres_data())
        print(f"imgbatch server: failed: the Prefect server {problem}", file=sys.stderr)
        return 1
    set_profile_url(api_url)
    print(
        f"imgbatch server: Prefect server running{' on PostgreSQL' if postgres else ''}, "
        f"UI at http://{HOST}:{port} (API {api_url}); later imgbatch commands use it until "
        "`imgbatch server stop`"
    )
    return 0


def ours(api_url: str | None) -> bool:
    """Whether the profile's URL is one `start` wrote (a loopback address)."""
    return bool(api_url) and api_url.startswith(f"http://{HOST}:")


def stop() -> int:
    """Stop the recorded server and remove its URL from the profile."""
    pid = running_pid()
    if pid:
        local_server.stop_process(pid)
    pid_file().unlink(missing_ok=True)
    local_server.stop_postgres(postgres_data())  # after its only client
    api_url = prefect_setup.setting("PREFECT_API_URL")
    if ours(api_url) and not os.environ.get("PREFECT_API_URL"):
        set_profile_url(None)
    print(
        f"imgbatch server: {'stopped' if pid else 'not running'}; later imgbatch commands "
        "start a temporary Prefect server"
    )
    return 0


def status() -> int:
    """Running (exit 0) or not (exit 1), and the URL later commands use."""
    api_url = prefect_setup.setting("PREFECT_API_URL")
    if api_url and local_server.healthy(api_url):
        ui = api_url.removesuffix("/api")
        print(f"imgbatch server: running, UI at {ui} (API {api_url})")
        return 0
    if api_url:
        print(f"imgbatch server: not running at PREFECT_API_URL={api_url}")
    else:
        print("imgbatch server: not running; commands start a temporary Prefect server")
    return 1
