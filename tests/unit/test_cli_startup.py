"""Before a flow runs: help stays light, Prefect's defaults are ours unless the user set them,
and an unreachable Prefect is one line with what to do, never a traceback."""

from __future__ import annotations

import http.server
import os
import pty
import subprocess
import sys
import threading

import pytest

from imgbatch.cli import prefect_setup
from imgbatch.cli.main import main

HEAVY = ("prefect", "pandas", "google.cloud.storage")
CI_VARIABLES = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "BUILDKITE", "CI_NAME")


def clean_env(home) -> dict[str, str]:
    """The environment of a user who configured no Prefect setting, with a fresh home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    for name in ("DO_NOT_TRACK", *CI_VARIABLES):
        env.pop(name, None)
    return {**env, "PREFECT_HOME": str(home)}


@pytest.fixture
def no_prefect_settings(tmp_path, monkeypatch):
    """No Prefect setting in the environment; whatever the test sets is undone after it."""
    names = {k for k in os.environ if k.startswith("PREFECT_")} | {"DO_NOT_TRACK"}
    ours = {
        prefect_setup.STARTUP_TIMEOUT,
        "PREFECT_SERVER_ANALYTICS_ENABLED",
        *prefect_setup.RECORDER,
    }
    for name in names | ours:
        monkeypatch.setenv(name, "")  # recorded, so teardown restores the original
        monkeypatch.delenv(name)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.parametrize("argv", [["--help"], ["preprocess", "--help"], ["server", "--help"]])
def test_help_imports_neither_prefect_nor_pandas_nor_the_storage_client(argv):
    code = (
        "import sys\nfrom imgbatch.cli.main import main\nrc = main(sys.argv[1:])\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert proc.returncode == 0 and "usage: imgbatch" in proc.stdout
    assert proc.stderr.strip() == "[]", proc.stderr


def write_profile(home, body: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "profiles.toml").write_text(f'active = "mine"\n\n[profiles.mine]\n{body}\n')


def test_defaults_raise_the_startup_timeout_and_turn_telemetry_off(no_prefect_settings):
    prefect_setup.set_defaults()
    assert os.environ[prefect_setup.STARTUP_TIMEOUT] == "120"
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert os.environ["DO_NOT_TRACK"] == "1"
    for name, value in prefect_setup.RECORDER.items():
        assert os.environ[name] == value


def test_defaults_leave_what_the_user_set_in_the_profile_or_environment(
    no_prefect_settings, monkeypatch
):
    batch = "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"
    write_profile(no_prefect_settings, f'{prefect_setup.STARTUP_TIMEOUT} = "45"\n{batch} = "10"')
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "true")
    prefect_setup.set_defaults()
    assert batch not in os.environ and prefect_setup.setting(batch) == "10"
    assert prefect_setup.STARTUP_TIMEOUT not in os.environ  # the profile's 45 s applies
    assert prefect_setup.setting(prefect_setup.STARTUP_TIMEOUT) == "45"
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "true"
    assert "DO_NOT_TRACK" not in os.environ


HEARTBEAT_IN_A_COMMAND = (
    "from imgbatch.cli import prefect_setup\n"
    "with prefect_setup.foreground_settings():\n"
    "    from prefect.settings import get_current_settings\n"
    "    print(get_current_settings().flows.heartbeat_frequency)\n"
)


@pytest.mark.parametrize(
    ("configured", "expected"),
    [(None, "None"), ("env", "60"), ("profile", "90")],
)
def test_a_commands_flow_run_sends_no_heartbeat_unless_the_user_set_one(
    tmp_path, configured, expected
):
    env = clean_env(tmp_path / "home")
    if configured == "env":
        env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = "60"
    elif configured == "profile":
        write_profile(tmp_path / "home", 'PREFECT_FLOWS_HEARTBEAT_FREQUENCY = "90"')
    proc = subprocess.run(
        [sys.executable, "-c", HEARTBEAT_IN_A_COMMAND], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


def terminal_output(code: str, env: dict[str, str]) -> str:
    """What `python -c code` prints on a real pseudo-terminal (Prefect's notice needs a TTY)."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=terminal, stdout=terminal, stderr=terminal, env=env
    )
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closed: the process exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(controller)
    return b"".join(chunks).decode(errors="replace")


def test_no_usage_data_notice_on_a_terminal_unless_the_user_turns_telemetry_on(tmp_path):
    quiet = "from imgbatch.cli import prefect_setup\nprefect_setup.set_defaults()\nimport prefect\n"
    assert "anonymous usage data" not in terminal_output(quiet, clean_env(tmp_path / "a"))
    # The same first import with the user's choice left to Prefect does show it.
    opted_in = {**clean_env(tmp_path / "b"), "PREFECT_SERVER_ANALYTICS_ENABLED": "true"}
    assert "anonymous usage data" in terminal_output(quiet, opted_in)


class Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        self.send_response(self.status if self.path == "/api/health" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status", [200, 401])
def test_a_configured_server_that_answers_is_accepted(status):
    handler = type("Answer", (Health,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        prefect_setup.check_reachable(f"http://127.0.0.1:{server.server_port}/api")
    finally:
        server.shutdown()


def closed_port() -> int:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    port = server.server_port
    server.server_close()
    return port


def test_an_unreachable_server_is_one_line_naming_it_and_exit_1(
    no_prefect_settings, monkeypatch, make_dataset, tmp_path, capsys
):
    url = f"http://127.0.0.1:{closed_port()}/api"
    write_profile(no_prefect_settings, f'PREFECT_API_URL = "{url}"')
    csv, root, _ = make_dataset(1)
    argv = ["preprocess", "--csv", csv, "--images", root, "--out", str(tmp_path / "out")]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    expected = "imgbatch preprocess: failed: cannot reach the Prefect server at "
    assert err.startswith(f"{expected}PREFECT_API_URL={url} (")
    assert "imgbatch server start" in err
    assert not (tmp_path / "out").exists()
