"""The UI's Retry on a failed deployment run recomputes only the failed partition.

Real parts only: the session's Prefect API server, `python -m imgbatch.deployments.serve` in a
subprocess (the runner that executes deployment runs), and the exact REST call the Prefect
3.9 UI's Retry button makes. The fault is real too: a non-empty folder sits where partition
2's shard must be renamed to, so committing that shard fails (EISDIR) until it is removed.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import numpy as np
import pandas as pd
import pytest
from helpers.deployments import REPO, final_run, press_retry, serving, tail, wait_for, wait_idle
from helpers.deployments import deployment as wait_deployment
from helpers.run_logs import errors, run_logs, tracebacks

from imgbatch.params import PreprocessParams
from imgbatch.sampledata.samples import write_csv, write_tree
from imgbatch.tasks.report import artifact_key

DEPLOYMENT = "preprocess-images/preprocess"
N_ROWS, PARTITION_SIZE, BAD = 40, 10, 2
PARTS = N_ROWS // PARTITION_SIZE

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """40 real photos under images/ and a CSV naming them: 4 partitions of 10."""
    root = tmp_path_factory.mktemp("ui-retry-data")
    paths = write_tree(root / "images", N_ROWS, seed=7)
    return write_csv(root / "train.csv", paths), root / "images"


def params(csv: Path, images: Path, out: Path) -> dict:
    """Flow parameters shared by the reference and the deployment runs."""
    return {"params": fields(csv, images, out)}


def fields(csv: Path, images: Path, out: Path) -> dict:
    return {
        "csv": str(csv),
        "images": str(images),
        "out": str(out),
        "size": 32,
        "partition_size": PARTITION_SIZE,
        "executor": "threads",
        "workers": 2,
        "retries": 0,
    }


def shard_files(out: Path, pid: int) -> list[Path]:
    base = out / "shards" / f"part-{pid:05d}"
    return [Path(f"{base}.npy"), Path(f"{base}.parquet"), Path(f"{base}.done.json")]


def stamps(out: Path, pids: list[int]) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of every shard file of these partitions: a rewrite changes both."""
    return {
        str(p): (p.stat().st_ino, p.stat().st_mtime_ns)
        for pid in pids
        for p in shard_files(out, pid)
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def served(prefect_server: None, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, Path]]:
    with serving(tmp_path, "--only-preprocess") as proc_log:
        yield proc_log


def partition_states(client, run_id: UUID, run_count: int) -> dict[str, list[str]]:
    """State names of the partition task runs of one attempt of the flow run, by task name."""
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    runs = client.read_task_runs(
        task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run_id]))
    )
    found: dict[str, list[str]] = {}
    for tr in runs:
        if tr.name.startswith("partition-") and tr.flow_run_run_count == run_count:
            found.setdefault(tr.name, []).append(tr.state.name if tr.state else "?")
    return found


def cards(client, run_id: UUID) -> list:
    """The run's artifacts, as its Artifacts tab lists them."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    mine = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
    return client.read_artifacts(artifact_filter=mine)


def failed_partitions_table(client, run_id: UUID, out: Path, attempt: int) -> list[dict]:
    """The run's one failed-partitions table: each attempt replaces the earlier one's."""
    key = artifact_key(str(out), "failed-partitions")
    tables = [a for a in cards(client, run_id) if a.key == key]
    assert len(tables) == 1, f"expected one failed-partitions artifact: {tables}"
    assert tables[0].description.startswith(f"attempt {attempt}:"), tables[0].description
    data = tables[0].data
    return json.loads(data) if isinstance(data, str) else data


def test_ui_retry_recomputes_only_the_failed_partition(
    served: tuple[subprocess.Popen, Path], dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from imgbatch.flows.preprocess import preprocess_images

    proc, log = served
    csv, images = dataset
    api = PREFECT_API_URL.value()

    # A clean in-process run of the same data: the bytes the retried run must end with.
    ref = tmp_path / "ref"
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: str(tmp_path / "ref-results")}):
        state = preprocess_images(PreprocessParams(**fields(csv, images, ref)), return_state=True)
    assert state.is_completed(), state.message
    ref_run = json.loads((ref / "run.json").read_text())

    # The fault: partition 2's shard cannot be renamed into place.
    out = tmp_path / "out"
    blocker = shard_files(out, BAD)[0]
    blocker.mkdir(parents=True)
    (blocker / "occupied").write_text("a folder where the shard must go\n")

    with get_client(sync_client=True) as client:
        deployment = wait_deployment(client, DEPLOYMENT, proc, log)
        created = client.create_flow_run_from_deployment(
            deployment.id, parameters=params(csv, images, out)
        )
        first = final_run(client, created.id, proc, log)
        assert first.state.is_failed(), f"{first.state!r}\n{tail(log)}"
        assert first.run_count == 1

        # First run: the others are committed, 2 is not, nothing assembled, failure listed.
        others = [p for p in range(PARTS) if p != BAD]
        assert all(f.is_file() for p in others for f in shard_files(out, p))
        assert not shard_files(out, BAD)[2].exists()
        assert not (out / "images.npy").exists()
        table = failed_partitions_table(client, first.id, out, attempt=1)
        assert [row["partition"] for row in table] == [BAD]
        assert "part-00002.npy" in table[0]["reason"], table
        assert "rows 20-29" in table[0]["reason"], table
        before = stamps(out, others)

        # The first attempt's logs (complete once its process is gone, as it is by the time
        # a person clicks Retry): the story in a few lines, one ERROR line, no traceback.
        wait_idle(proc.pid)
        attempt_1 = run_logs(client, first.id)
        assert_first_attempt_logs(attempt_1, first.state.message)

        # Clear the fault, then press "Retry" the way the UI does.
        (blocker / "occupied").unlink()
        blocker.rmdir()
        time.sleep(0.05)  # a rewrite of the other shards would get a later mtime
        press_retry(api, first.id)
        assert client.read_flow_run(first.id).state.name == "AwaitingRetry"

        second = final_run(client, first.id, proc, log)
        assert second.id == first.id
        assert second.state.is_completed(), f"{second.state!r}\n{tail(log)}"
        assert second.run_count == 2, second.run_count

        retry_states = wait_for(
            "the retry's partition task runs",
            lambda: _all_final(partition_states(client, first.id, 2)),
            proc,
            log,
            timeout=30,
        )
        table = failed_partitions_table(client, first.id, out, attempt=2)
        assert "none failed on attempt 2" in table[0]["reason"], table
        # The Completed run's page shows this attempt's cards only, the summary naming what
        # it recomputed; and its logs tell the story of the Retry.
        shown = cards(client, first.id)
        assert all(a.description.startswith("attempt 2:") for a in shown), shown
        summary = [a for a in shown if a.key == artifact_key(str(out), "summary")]
        assert len(summary) == 1 and f"computed on attempt 2: {BAD}\n" in summary[0].data
        wait_idle(proc.pid)
        seen = {log.id for log in attempt_1}
        attempt_2 = [log for log in run_logs(client, first.id) if log.id not in seen]

    # Only partition 2 was written: the others keep their inode and mtime ...
    assert stamps(out, others) == before
    # ... and the retry ran a task for it alone (done partitions need none).
    assert retry_states == {f"partition-{BAD}": ["Completed"]}, retry_states
    assert all(f.is_file() for f in shard_files(out, BAD))
    done = json.loads(shard_files(out, BAD)[2].read_text())
    assert done["rows"] == PARTITION_SIZE

    # Output byte-identical to the clean run; run.json describes it.
    assert sha256(out / "images.npy") == sha256(ref / "images.npy")
    run = json.loads((out / "run.json").read_text())
    assert run["images_sha256"] == ref_run["images_sha256"] == sha256(out / "images.npy")
    assert run["rows"] == N_ROWS and run["partitions"] == PARTS
    assert run["counts"] == ref_run["counts"] and sum(run["counts"].values()) == N_ROWS
    assert_retry_logs(attempt_2, out, run)
    assert np.load(out / "images.npy", mmap_mode="r").shape == (N_ROWS, 32, 32, 3)
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "index.parquet"), pd.read_parquet(ref / "index.parquet")
    )


def messages(logs: list, level: int | None = None) -> list[str]:
    return [log.message for log in logs if level is None or log.level == level]


def assert_first_attempt_logs(logs: list, reason: str) -> None:
    """Planned, the failed partition in one line, the count; the reason as the one ERROR;
    no line per completed partition (the plan task's own line is the only one)."""
    said = messages(logs)
    assert errors(logs) == [reason] and not tracebacks(logs), said
    planned = f"planned {PARTS} partitions ({N_ROWS} rows in the CSV): 0 already done, "
    assert planned + f"{PARTS} to compute" in said, said
    warned = messages(logs, 30)
    assert len(warned) == 1, said
    assert warned[0].startswith(f"partition {BAD} failed: rows 20-29: WriteError: "), said
    assert f"partitions: {PARTS - 1} of {PARTS} done (0 reused), 1 failed" in said, said
    assert said.count("Finished in state Completed()") == 1, said


def assert_retry_logs(logs: list, out: Path, run: dict) -> None:
    """The Retry's story: the plan's counts, the one partition's count, what was written."""
    said = messages(logs)
    assert not errors(logs) and not tracebacks(logs), said
    planned = f"planned {PARTS} partitions ({N_ROWS} rows in the CSV): {PARTS - 1} already "
    assert planned + "done, 1 to compute" in said, said
    assert f"partitions: {PARTS} of {PARTS} done ({PARTS - 1} reused), 0 failed" in said, said
    counts = ", ".join(f"{k}={v}" for k, v in sorted(run["counts"].items()))
    wrote = (
        f"wrote {out / 'images.npy'}: {N_ROWS} rows, shape {(N_ROWS, 32, 32, 3)}, "
        f"sha256 {run['images_sha256'][:16]}..., {counts}"
    )
    assert wrote in said, said


def _all_final(states: dict[str, list[str]]) -> dict[str, list[str]] | None:
    """The states once every partition's task run of the attempt is recorded as final."""
    final = {"Completed", "Failed", "Crashed", "Cancelled"}
    if states and all(s and s[-1] in final for s in states.values()):
        return states
    return None


def test_deployment_configs_match_the_flows() -> None:
    """prefect.yaml and serve.py name real flows, and the example parameters validate.

    (`prefect deploy --prefect-file deployments/prefect.yaml --all` against a live server is
    what the UI-retry test's serve path stands in for; this keeps the YAML from rotting.)
    """
    import yaml
    from prefect.flows import load_flow_from_entrypoint

    from imgbatch.deployments.serve import PREPROCESS_DEPLOYMENT, build_deployments

    config = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    assert config["deployments"], "no deployments in prefect.yaml"
    pool_flows = {}
    for d in config["deployments"]:
        assert d["name"] and d["entrypoint"] and d["work_pool"]["name"] == "imgbatch-pool", d
        assert "schedules" not in d or d["schedules"], "an empty schedules list warns on deploy"
        path, func = d["entrypoint"].split(":")
        assert (REPO / path).is_file(), d["entrypoint"]
        flow = load_flow_from_entrypoint(str(REPO / path) + ":" + func)
        flow.validate_parameters(d.get("parameters") or {})
        for schedule in d.get("schedules") or []:
            assert schedule.get("active") is False, "schedules ship switched off"
        pool_flows[flow.name] = d["name"]

    served = build_deployments(only_preprocess=False)
    assert served[0].name == PREPROCESS_DEPLOYMENT and not served[0].schedules
    assert f"{served[0].flow_name}/{served[0].name}" == DEPLOYMENT
    # The same flows on both paths, never under the same deployment name.
    assert pool_flows == {d.flow_name: f"{d.name}-pool" for d in served}
    for d in served:
        module, func = d.entrypoint.rsplit(".", 1)
        assert module.startswith("imgbatch.flows.") and func, d.entrypoint
