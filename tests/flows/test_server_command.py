"""`imgbatch server` and the first command on a fresh machine, as real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from imgbatch.cli.local_server import free_port
from tests.unit.test_cli_startup import clean_env

IMGBATCH = [sys.executable, "-m", "imgbatch.cli.main"]


def imgbatch(*argv: str, home: Path, timeout: float = 300, **env: str):
    return subprocess.run(
        [*IMGBATCH, *argv],
        env={**clean_env(home), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def preprocess_argv(make_dataset, out: Path) -> list[str]:
    csv, root, _ = make_dataset(1, max_side=64)
    return ["preprocess", "--csv", csv, "--images", root, "--out", str(out), "--size", "16"]


def flow_runs(api_url: str) -> list[dict]:
    request = urllib.request.Request(
        f"{api_url}/flow_runs/filter", data=b"{}", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_server_start_is_used_by_later_commands_until_stop(make_dataset, tmp_path):
    home, port = tmp_path / "home", free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    started = imgbatch("server", "start", "--port", str(port), home=home)
    assert started.returncode == 0, started.stderr
    assert f"UI at http://127.0.0.1:{port}" in started.stdout
    try:
        assert api_url in (home / "profiles.toml").read_text()
        status = imgbatch("server", "status", home=home)
        assert status.returncode == 0 and f"running, UI at http://127.0.0.1:{port}" in status.stdout

        run = imgbatch(*preprocess_argv(make_dataset, tmp_path / "out"), home=home)
        assert run.returncode == 0, run.stderr
        assert "temporary Prefect server" not in run.stderr
        runs = flow_runs(api_url)
        assert len(runs) == 1 and runs[0]["state_type"] == "COMPLETED"
        assert runs[0]["parameters"]["params"]["out"] == str(tmp_path / "out")
        with urllib.request.urlopen(f"{api_url}/admin/settings", timeout=10) as response:
            recorder = json.load(response)["server"]["services"]["task_run_recorder"]
        assert (recorder["batch_size"], recorder["flush_interval"]) == (100, 1.0)
    finally:
        stopped = imgbatch("server", "stop", home=home)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert "PREFECT_API_URL" not in (home / "profiles.toml").read_text()
    after = imgbatch("server", "status", home=home)
    assert after.returncode == 1 and "not running" in after.stdout
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing listens there any more


def test_server_start_on_a_busy_port_is_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = imgbatch("server", "start", "--port", str(port), home=tmp_path / "home")
    assert proc.returncode == 1 and proc.stdout == ""
    expected = f"imgbatch server: failed: port {port} is in use; choose one with --port\n"
    assert proc.stderr == expected


def test_first_run_on_a_fresh_home_without_a_server_completes(make_dataset, tmp_path):
    run = imgbatch(*preprocess_argv(make_dataset, tmp_path / "out"), home=tmp_path / "fresh")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("1 rows -> ")
    notices = [line for line in run.stderr.splitlines() if "temporary" in line.lower()]
    assert notices[0].startswith("imgbatch: starting a temporary Prefect server (first use")
    assert "Starting temporary server" not in run.stderr and "Traceback" not in run.stderr
    assert (tmp_path / "out" / "images.npy").exists()


def test_a_temporary_server_too_slow_to_start_is_one_line_and_exit_1(make_dataset, tmp_path):
    argv = preprocess_argv(make_dataset, tmp_path / "out")
    timeout = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "1"}
    run = imgbatch(*argv, home=tmp_path / "fresh", **timeout)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    failed = [line for line in run.stderr.splitlines() if line.startswith("imgbatch preprocess:")]
    assert len(failed) == 1, run.stderr
    assert failed[0].startswith(
        "imgbatch preprocess: failed: the temporary Prefect server did not answer within 1 s"
    )
    assert failed[0].endswith(
        "run `imgbatch server start` once (it waits as long as needed), or raise "
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
    )


def server_children(pid: int) -> list[int]:
    """Processes whose parent is `pid` and that run a Prefect server."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == pid and b"prefect\0server\0start" in cmdline:
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_killed_command_does_not_leave_its_temporary_server_running(make_dataset, tmp_path):
    argv = preprocess_argv(make_dataset, tmp_path / "out")
    env = clean_env(tmp_path / "fresh")
    proc = subprocess.Popen([*IMGBATCH, *argv], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (servers := server_children(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert servers, "the command never started its temporary server"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 20
    while alive(servers[0]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(servers[0]), "the temporary server outlived the killed command"


def test_ctrl_c_at_the_terminal_stops_the_run_at_once_and_a_rerun_resumes(make_dataset, tmp_path):
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it: the temporary
    server is in a session of its own, so the run stops (exit 130, one line), the server goes
    with it, and the same command afterwards completes from the committed shards."""
    csv, root, _ = make_dataset(120, min_side=200, max_side=400)
    out = tmp_path / "out"
    argv = ["preprocess", "--csv", csv, "--images", root, "--out", str(out)]
    argv += ["--partition-size", "10", "--workers", "1"]
    env = clean_env(tmp_path / "home")
    proc = subprocess.Popen(
        [*IMGBATCH, *argv], env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while not list(out.glob("shards/*.done.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(out.glob("shards/*.done.json")), "no shard was committed"
    servers = server_children(proc.pid)
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130 and time.monotonic() - t0 < 15, err[-2000:]
    lines = [x for x in err.splitlines() if x.startswith("imgbatch preprocess:")]
    assert lines == [
        "imgbatch preprocess: interrupted; rerun the same command to pick up where it stopped"
    ]
    assert "Traceback" not in err
    assert servers and not any(alive(pid) for pid in servers)
    again = imgbatch(*argv, home=tmp_path / "home")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("120 rows -> ")


def test_two_first_commands_at_once_on_a_fresh_home_both_complete(make_dataset, tmp_path):
    csv, root, _ = make_dataset(3, max_side=64)
    env = clean_env(tmp_path / "fresh")
    procs = [
        subprocess.Popen(
            [*IMGBATCH, "preprocess", "--csv", csv, "--images", root, "--out", str(tmp_path / o)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for o in ("a", "b")
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "Traceback" not in err, err[-3000:]
        assert out.startswith("3 rows -> ")
