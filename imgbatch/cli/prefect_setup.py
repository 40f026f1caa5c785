"""Getting a Prefect API before a command runs a flow: quiet, patient, one line on failure.

With no server configured, Prefect would start a temporary (ephemeral) one inside the
command: it builds its database on first use, which on a busy machine takes longer than
Prefect's 20 s start-up timeout; it shares the command's process group, so a Ctrl-C at the
terminal kills it and leaves the run failing for minutes; and a `kill -9` of the command
leaves it running. So the command starts its own temporary server (cli/local_server.py:
its own session, waited for as long as PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
default 120 s), points this process at it, stops it when the command ends, and a watchdog
(cli/watchdog.py) stops it if the command dies; Prefect is imported while that server
starts. Help and argument errors never import Prefect: settings are read without it, from
every source Prefect 3 reads, in its order (the environment, then `.env`, `prefect.toml`
and `pyproject.toml [tool.prefect]` in the working directory, then the active profile), so
a setting the user made anywhere is found and never overridden. A command's own flow run
sends no heartbeat unless the user configured one (foreground_settings).
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from imgbatch.atomic_files import exclusive_lock
from imgbatch.cli import local_server

STARTUP_TIMEOUT = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
DEFAULT_STARTUP_TIMEOUT = "120"
HEARTBEAT = ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY")
# Prefect's task-run recorder writes each task-run event in a transaction of its own; in
# batches of up to 100 (or each second) the server spends much less CPU per partition
# (docs/decisions/batched-task-run-recorder.md; `python -m benchmarks.scale`, "server CPU s"),
# and a task run shows in the UI within a second.
# The event persister, likewise, commits every 20 events by default: a 1,000-partition run
# made it commit several times a second, and on SQLite each commit during another request's
# read-then-write makes that request fail with 503 (`python -m benchmarks.server_load`;
# docs/decisions/postgres-for-concurrent-runs.md). Events reach the UI's feed within 5 s.
RECORDER = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "1000",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "5",
}
OWNER = "IMGBATCH_OWNER_PID"  # inherited by every process the command starts
FIRST_USE_NOTICE = (
    "imgbatch: starting a temporary Prefect server (first use builds its database; "
    "for speed run `imgbatch server start`)"
)
DATABASE_URL = "PREFECT_SERVER_DATABASE_CONNECTION_URL"


# Kept for the life of the command: each holds its watchdog's pipe open.
_WATCHDOGS: list[subprocess.Popen] = []


# The temporary server of this command, if it started one.
_TEMPORARY: list[int] = []


class PrefectUnavailable(Exception):
    """No Prefect API can be reached; the message says why and what to do."""


def prefect_home() -> Path:
    """PREFECT_HOME as Prefect resolves it (default ~/.prefect)."""
    return Path(file_setting("PREFECT_HOME") or "~/.prefect").expanduser()


def flattened(table: dict, prefix: str = "PREFECT") -> dict[str, str]:
    """A Prefect TOML table as environment names: `[server.database] timeout = 30` is
    PREFECT_SERVER_DATABASE_TIMEOUT (Prefect's names are its field paths joined by `_`)."""
    names: dict[str, str] = {}
    for key, value in table.items():
        name = f"{prefix}_{key}".upper()
        names.update(flattened(value, name) if isinstance(value, dict) else {name: str(value)})
    return names


def toml_settings(path: str, table: tuple[str, ...] = ()) -> dict[str, str]:
    """The settings in a TOML file of the working directory (its `table`), if it exists."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}
    for key in table:
        data = data.get(key, {}) if isinstance(data, dict) else {}
    return flattened(data) if isinstance(data, dict) else {}


def dotenv_settings() -> dict[str, str]:
    """The PREFECT_ settings in `.env` of the working directory, as Prefect reads it."""
    if not Path(".env").is_file():
        return {}
    import dotenv  # python-dotenv, Prefect's own reader of this file (not Prefect itself)

    values = dotenv.dotenv_values(".env")
    return {k.upper(): v for k, v in values.items() if k.upper().startswith("PREFECT_") and v}


def file_settings() -> list[dict[str, str]]:
    """Prefect's sources other than the profile, highest priority first."""
    return [
        dict(os.environ),
        dotenv_settings(),
        toml_settings("prefect.toml"),
        toml_settings("pyproject.toml", ("tool", "prefect")),
    ]


def file_setting(name: str) -> str | None:
    """`name` from the environment or a settings file, not from the profile."""
    return next((found[name] for found in file_settings() if found.get(name)), None)


def profile_settings() -> dict[str, str]:
    """The settings of the active Prefect profile, read from profiles.toml without Prefect."""
    home = Path(os.environ.get("PREFECT_HOME") or "~/.prefect")  # as Prefect finds the file
    path = Path(file_setting("PREFECT_PROFILES_PATH") or home / "profiles.toml")
    try:
        data = tomllib.loads(path.expanduser().read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    active = os.environ.get("PREFECT_PROFILE") or data.get("active") or "ephemeral"
    profile = data.get("profiles", {}).get(active, {})
    return {str(k): str(v) for k, v in profile.items()}


def setting(name: str) -> str | None:
    """A Prefect setting the user configured, from the first of Prefect's sources that has it."""
    return file_setting(name) or profile_settings().get(name) or None


def set_defaults() -> None:
    """Patient start-up, batched task-run records and telemetry off, unless the user
    configured them; before Prefect, so the servers a command starts inherit them."""
    for name, value in {STARTUP_TIMEOUT: DEFAULT_STARTUP_TIMEOUT, **RECORDER}.items():
        if setting(name) is None:
            os.environ[name] = value
    if setting("PREFECT_SERVER_ANALYTICS_ENABLED") is None:
        os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        # The client-side switch: without it Prefect prints its usage-data notice on a TTY.
        os.environ.setdefault("DO_NOT_TRACK", "1")


def check_reachable(api_url: str, timeout: float = 10.0) -> None:
    """Raise PrefectUnavailable if nothing answers at api_url (any HTTP answer will do)."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answered (e.g. Prefect Cloud wants a key for /health)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PrefectUnavailable(
            f"cannot reach the Prefect server at PREFECT_API_URL={api_url} ({reason}); "
            "start it with `imgbatch server start`, or use a temporary one: "
            "`imgbatch server stop` (or unset PREFECT_API_URL if you exported it)"
        ) from None


@contextmanager
def one_start_at_a_time() -> Iterator[None]:
    """Servers of one PREFECT_HOME start one after the other: the first builds (migrates)
    the shared database, the next finds it ready (two at once can break the migration)."""
    home = prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(home / "imgbatch-server-start.lock"):
        yield


def start_temporary_server() -> None:
    """A server for this command only: started, waited for, used, stopped at exit."""
    guard_with_watchdog()
    if first_use():
        print(FIRST_USE_NOTICE, file=sys.stderr)
    port = local_server.free_port()
    url = local_server.api_url(port)
    log = prefect_home() / "imgbatch-temporary-server.log"
    timeout = float(setting(STARTUP_TIMEOUT) or DEFAULT_STARTUP_TIMEOUT)
    with one_start_at_a_time():
        proc = local_server.spawn(port, log, ui=False)
        _TEMPORARY.append(proc.pid)
        atexit.register(stop_temporary_server)
        os.environ["PREFECT_API_URL"] = url
        import_prefect_meanwhile()
        problem = local_server.wait_healthy(proc, url, timeout, log)
    if problem:
        raise PrefectUnavailable(
            f"the temporary Prefect server {problem}; run `imgbatch server start` once (it "
            f"waits as long as needed), or raise {STARTUP_TIMEOUT}"
        )


def stop_temporary_server() -> None:
    """Stop this command's temporary server, at exit or on Ctrl-C (before the command ends,
    so it never outlives the command). Our own kept-alive connections make its graceful
    shutdown wait; SQLite is crash-safe, so it gets a second, then SIGKILL."""
    while _TEMPORARY:
        local_server.stop_process(_TEMPORARY.pop(), 1.0)


def first_use() -> bool:
    """True when the profile's database does not exist yet (Prefect's default SQLite file in
    PREFECT_HOME; a database the user configured is theirs, and already built)."""
    return setting(DATABASE_URL) is None and not (prefect_home() / "prefect.db").exists()


def import_prefect_meanwhile() -> None:
    """Import Prefect's flow machinery while the server starts in its own process: the
    import's CPU is spent on another core, instead of after the server answers.
    PREFECT_API_URL is set first, since Prefect reads its settings when imported."""
    import prefect.main  # noqa: F401


def guard_with_watchdog() -> None:
    """Stop every process this command starts (marked by OWNER) if the command is killed."""
    if _WATCHDOGS or not Path("/proc/self/environ").exists():
        return  # the watchdog finds processes through /proc (Linux)
    os.environ[OWNER] = str(os.getpid())
    _WATCHDOGS.append(
        subprocess.Popen(
            [sys.executable, "-m", "imgbatch.cli.watchdog", OWNER, str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,  # never hold the command's output open after it exits
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    )


def prepare() -> bool:
    """Before a command runs a flow: defaults, then a reachable API (or PrefectUnavailable).
    True when that API is a temporary server of this command (it serves no UI)."""
    set_defaults()
    api_url = setting("PREFECT_API_URL")
    if api_url:
        check_reachable(api_url)
        return False
    start_temporary_server()
    return True


def foreground_settings() -> AbstractContextManager:
    """Settings for a flow run in this process: no flow-run heartbeat unless configured.

    Prefect 3.9's heartbeat thread sleeps in 1 s steps and is joined when the flow ends, so
    every command waited 0-1 s for it; it only serves automations that mark a silent run
    Crashed, while a command's run is watched from its own terminal
    (docs/decisions/no-heartbeat-for-commands.md).
    Deployed runs (serve, workers) run in their own processes and keep Prefect's default.
    """
    if any(setting(name) for name in HEARTBEAT):
        return nullcontext()
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    return temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
