"""The UI's Run button keeps working while a big run executes, on the documented production
setup: `imgbatch server start --postgres` (a real PostgreSQL, a real Prefect server, real
commands). benchmarks/server_load.py measures the same at 1,000 partitions, per backend."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

from benchmarks.server_load import Prober, register_deployment
from imgbatch.cli import local_server
from tests.flows.test_server_command import IMGBATCH, imgbatch

PARTITIONS = 200

pytestmark = pytest.mark.skipif(
    local_server.postgres_bin() is None,
    reason="PostgreSQL is not installed: pip install 'imgbatch[postgres]' (make test does)",
)


@pytest.fixture
def home():
    """A PREFECT_HOME that PostgreSQL's own user can reach when the tests run as root
    (pytest's tmp_path is private to root)."""
    folder = tempfile.mkdtemp(prefix="imgbatch-pg-")
    os.chmod(folder, 0o755)
    yield Path(folder) / "home"
    shutil.rmtree(folder, ignore_errors=True)


def runs_of(api_url: str, deployment: str) -> list[dict]:
    body = {"flow_runs": {"deployment_id": {"any_": [deployment]}}}
    request = urllib.request.Request(
        f"{api_url}/flow_runs/filter",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_run_creation_during_a_big_run_succeeds_on_postgres(make_dataset, home, tmp_path):
    port = local_server.free_port()
    api_url = local_server.api_url(port)
    started = imgbatch("server", "start", "--port", str(port), "--postgres", home=home)
    assert started.returncode == 0, started.stderr
    assert "on PostgreSQL" in started.stdout
    data = home / "postgres"
    assert local_server.postgres_pid(data), "no PostgreSQL runs on the profile's folder"
    try:
        deployment = register_deployment(api_url)
        csv, root, _ = make_dataset(PARTITIONS, min_side=16, max_side=24)
        argv = ["preprocess", "--csv", csv, "--images", root, "--out", str(tmp_path / "out")]
        argv += ["--partition-size", "1", "--size", "8"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        run = subprocess.Popen(
            [*IMGBATCH, *argv],
            env={**env, "PREFECT_HOME": str(home)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with Prober(api_url, deployment, every=0.2) as prober:
            out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-2000:]
        assert out.startswith(f"{PARTITIONS} rows -> ")
        statuses = [status for status, _ in prober.answers]
        assert len(statuses) >= 5, "the run ended before the UI could try"
        assert set(statuses) == {201}, prober.counts()
        assert len(runs_of(api_url, deployment)) == len(statuses)
    finally:
        stopped = imgbatch("server", "stop", home=home)
    assert stopped.returncode == 0, stopped.stderr
    assert local_server.postgres_pid(data) is None, "PostgreSQL outlived `server stop`"
