"""Run creation while a big run executes: what the Prefect UI's Run form gets, per backend.

    .venv/bin/python -m benchmarks.server_load [--partitions 1000] [--every 0.5]
    .venv/bin/python -m benchmarks.server_load --backends sqlite,postgres   # names: BACKENDS

For each backend, `imgbatch server start` (with `--postgres` for PostgreSQL) under a private
PREFECT_HOME; a deployment registered through the API; then `imgbatch preprocess` on a CSV of
`--partitions` tiny real-photo images with `--partition-size 1` (one task run per row, so
orchestration, not decoding, is the load) while a loop sends, every `--every` seconds, the
request the UI's Run form sends: POST /api/deployments/{id}/create_flow_run, once, with no
retry (the UI does not retry). The table gives the answers by status code, the slowest
answer, and the run's own wall time; a 503 is a run the operator pressed Submit for and
did not get.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

from benchmarks import report
from imgbatch.cli.local_server import free_port

CLI = [sys.executable, "-m", "imgbatch.cli.main"]


def clean_env(home: str) -> dict[str, str]:
    """This environment without any Prefect setting, with its own PREFECT_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "PREFECT_HOME": home}


def post(url: str, body: dict, timeout: float = 60) -> tuple[int, dict | None]:
    """(status, JSON answer) of one POST, never retried."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, None


def register_deployment(api_url: str) -> str:
    """A deployment with no runner: a created run stays Scheduled, as it would until serve
    picks it up; the request and the server's work to create it are the UI's."""
    status, flow = post(f"{api_url}/flows/", {"name": "server-load-probe"})
    assert status in (200, 201) and flow, status
    body = {"name": "probe", "flow_id": flow["id"], "parameters": {}}
    status, deployment = post(f"{api_url}/deployments/", body)
    assert status in (200, 201) and deployment, status
    return deployment["id"]


def ui_run_form(n: int) -> dict:
    """The body the UI's custom-run form sends (Prefect 3.9's UI)."""
    return {
        "state": {"type": "SCHEDULED", "message": "Run from the Prefect UI"},
        "name": f"probe-{n}",
        "parameters": {},
        "tags": [],
        "enforce_parameter_schema": True,
    }


@dataclass
class Prober:
    """Sends the UI's create_flow_run every `every` seconds until stopped."""

    api_url: str
    deployment: str
    every: float = 1.0
    answers: list[tuple[int, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _loop(self) -> None:
        url = f"{self.api_url}/deployments/{self.deployment}/create_flow_run"
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                status = post(url, ui_run_form(len(self.answers)))[0]
            except OSError:
                status = 0  # no HTTP answer at all
            self.answers.append((status, time.perf_counter() - t0))
            self._stop.wait(self.every)

    def __enter__(self) -> Prober:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def counts(self) -> Counter:
        return Counter(status for status, _ in self.answers)


def make_corpus(folder: str, n: int) -> tuple[str, str]:
    """n tiny real photos and a CSV naming them: (csv, images root)."""
    from imgbatch.sampledata import samples

    root = os.path.join(folder, "images")
    paths = samples.write_tree(root, n, min_side=16, max_side=32)
    return str(samples.write_csv(os.path.join(folder, "rows.csv"), paths)), root


# Prefect's own defaults for the services imgbatch tunes on the servers it starts.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "1",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "20",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "5",
}
# name: (what the table calls it, options of `server start`, its environment)
BACKENDS = {
    "sqlite-prefect": ("SQLite, Prefect's service defaults", [], PREFECT_DEFAULTS),
    "sqlite": ("SQLite (`server start`, the default)", [], {}),
    "postgres": ("PostgreSQL (`server start --postgres`)", ["--postgres"], {}),
}


def start_server(home: str, port: int, backend: str) -> str:
    """`imgbatch server start` under `home` as `backend` (a key of BACKENDS); its API URL."""
    _, options, env = BACKENDS[backend]
    argv = [*CLI, "server", "start", "--port", str(port), *options]
    proc = subprocess.run(argv, env={**clean_env(home), **env}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"server start ({backend}) failed: {proc.stderr[-800:]}")
    return f"http://127.0.0.1:{port}/api"


def stop_server(home: str) -> None:
    subprocess.run([*CLI, "server", "stop"], env=clean_env(home), capture_output=True)


def loaded_run(
    home: str, csv: str, images: str, out: str, api_url: str, every: float
) -> tuple[Prober, float, int]:
    """The big run with the prober beside it: (prober, run seconds, run exit code)."""
    deployment = register_deployment(api_url)
    argv = [*CLI, "preprocess", "--csv", csv, "--images", images, "--out", out]
    argv += ["--partition-size", "1", "--size", "16"]
    t0 = time.perf_counter()
    run = subprocess.Popen(
        argv, env=clean_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    with Prober(api_url, deployment, every) as prober:
        err = run.communicate()[1]
    if run.returncode != 0:
        print(err[-2000:], file=sys.stderr)
    return prober, time.perf_counter() - t0, run.returncode


def row(backend: str, prober: Prober, seconds: float, code: int) -> str:
    counts = prober.counts()
    ok = sum(v for k, v in counts.items() if k in (200, 201))
    others = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if k not in (200, 201))
    slowest = max((s for _, s in prober.answers), default=0.0)
    return (
        f"| {BACKENDS[backend][0]} | {len(prober.answers)} | {ok} | {others or '-'} | "
        f"{slowest:.2f} | {seconds:.0f} | {code} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=1000)
    parser.add_argument("--backends", default=",".join(BACKENDS), help="keys of BACKENDS")
    parser.add_argument("--every", type=float, default=0.5, help="seconds between tries")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="server-load-") as tmp:
        os.chmod(tmp, 0o755)  # PostgreSQL runs as another user when we are root
        csv, images = make_corpus(tmp, args.partitions)
        for backend in args.backends.split(","):
            home = os.path.join(tmp, f"home-{len(rows)}")
            api_url = start_server(home, free_port(), backend)
            try:
                out = os.path.join(tmp, f"out-{len(rows)}")
                prober, seconds, code = loaded_run(home, csv, images, out, api_url, args.every)
            finally:
                stop_server(home)
            rows.append(row(backend, prober, seconds, code))
    print(
        f"{args.partitions} partitions of 1 row, `imgbatch preprocess` against `imgbatch server "
        f"start`; the UI's create_flow_run sent every {args.every:g} s during the run, "
        "no retry.\n"
    )
    print("| backend | tries | created (201) | other answers | slowest s | run s | run exit |")
    print("|---|---:|---:|---|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(report.run(main))
