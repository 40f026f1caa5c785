"""`python -m imgbatch.deployments.serve` as a real subprocess against the session's Prefect
server, and the exact request the Prefect 3.9 UI's Retry button sends (shared by the deployment
tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
# What the UI's FlowRunRetryModal sends (prefect/server/ui/assets, `retryFlowRun`): a
# Scheduled state named AwaitingRetry, through the normal orchestration rules (force false:
# the server refuses it for a run without a deployment).
UI_RETRY_BODY = {
    "state": {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "Retry from the UI"},
    "force": False,
}


def tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"


@contextmanager
def serving(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen, Path]]:
    """`python -m imgbatch.deployments.serve ARGS` against the harness API; stopped before the
    server.

    It inherits this process's environment (e.g. STORAGE_EMULATOR_HOST set by a fixture)."""
    from prefect.settings import PREFECT_API_URL

    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("IMGBATCH_PREPROCESS_CRON", None)
    command = [sys.executable, "-m", "imgbatch.deployments.serve", "--poll-seconds", "1", *args]
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            wait_idle(proc.pid)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def flow_run_processes(pid: int) -> list[int]:
    """Children of the serve process (its flow run processes: `python -m prefect.engine`)."""
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"resource_tracker" not in cmd:
                found.append(int(child))
    return found


def wait_idle(pid: int, timeout: float = 30) -> None:
    """Let the flow run process finish its shutdown before serve is stopped.

    The API shows the run Completed a moment before its process exits; a SIGTERM to serve
    in that window makes the runner cancel the run (and log it as cancelled).
    """
    deadline = time.monotonic() + timeout
    while flow_run_processes(pid):
        assert time.monotonic() < deadline, f"flow run processes of {pid} still alive"
        time.sleep(0.2)


def wait_for(what: str, check, proc: subprocess.Popen, log: Path, timeout: float):
    """Poll `check()` until it returns something truthy; fail early if serve died."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"serve exited ({proc.returncode}) waiting for {what}:\n{tail(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}; serve log:\n{tail(log)}")
        time.sleep(0.5)


def final_run(client, run_id: UUID, proc: subprocess.Popen, log: Path, timeout: float = 120):
    def check():
        run = client.read_flow_run(run_id)
        return run if run.state is not None and run.state.is_final() else None

    return wait_for(f"flow run {run_id} to finish", check, proc, log, timeout)


def deployment(client, name: str, proc: subprocess.Popen, log: Path):
    """The deployment `flow/name`, once serve has registered it."""
    from prefect.exceptions import ObjectNotFound

    def check():
        try:
            return client.read_deployment_by_name(name)
        except ObjectNotFound:
            return None

    return wait_for(f"deployment {name}", check, proc, log, timeout=90)


def press_retry(api_url: str, run_id: UUID) -> None:
    """What the UI's Retry button does to a failed deployment run."""
    reply = httpx.post(f"{api_url}/flow_runs/{run_id}/set_state", json=UI_RETRY_BODY, timeout=30)
    reply.raise_for_status()
    assert reply.json()["status"] == "ACCEPT", reply.json()


def schedule_past_day(client, api_url: str, deployment_id: UUID) -> list:
    """The scheduler's own step for one past day (a backfill) of the deployment's schedules;
    the runs it made. A 503 (SQLite busy under other tests' writes) is sent again, as
    Prefect's own client does."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    of_deployment = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    known = {r.id for r in client.read_flow_runs(deployment_filter=of_deployment)}
    now = time.time()
    window = {
        "start_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 2 * 86400)),
        "end_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 86400)),
    }
    for attempt in range(5):
        reply = httpx.post(
            f"{api_url}/deployments/{deployment_id}/schedule", json=window, timeout=30
        )
        if reply.status_code != 503:
            break
        time.sleep(1 + attempt)
    reply.raise_for_status()
    return [r for r in client.read_flow_runs(deployment_filter=of_deployment) if r.id not in known]
