"""The preprocess_images flow against a real Prefect API server (prefect_test_harness)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from prefect import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter

import imgbatch.tasks.preprocess
from imgbatch.errors import PermanentError, TransientError
from imgbatch.flows.preprocess import CONCURRENCY_LIMIT, preprocess_images
from imgbatch.output.verify import verify_output
from imgbatch.params import PreprocessParams
from imgbatch.storage.base import LocalStorage
from imgbatch.tasks.report import artifact_key

pytestmark = pytest.mark.usefixtures("prefect_server")


def run(csv, root, out, **kw):
    kw.setdefault("partition_size", 10)
    kw.setdefault("workers", 2)
    kw.setdefault("retry_delay_seconds", 0)
    params = PreprocessParams(csv=csv, images=root, out=str(out), **kw)
    return preprocess_images(params, return_state=True)


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def task_states(flow_run_id) -> dict[str, tuple[str, int]]:
    """task run name -> (state name, run_count) for one flow run."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [flow_run_id]}))
    return {r.name: (r.state.name, r.run_count) for r in runs}


def artifact(key: str):
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    return max(found, key=lambda a: a.created) if found else None


def test_flow_writes_verified_outputs_and_a_rerun_runs_no_partition(make_dataset, tmp_path):
    csv, root, paths = make_dataset(34, extra=["missing/gone.jpg"])
    (Path(root) / paths[5]).write_bytes(b"<html>not an image</html>")
    out = tmp_path / "out"

    state = run(csv, root, out)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["assembled"] and result["rows"] == 35
    verified = verify_output(str(out))
    assert verified["counts"] == {"ok": 33, "corrupt": 1, "missing": 1}
    index = pd.read_parquet(out / "index.parquet")
    assert index.loc[5, "status"] == "corrupt" and index.loc[34, "status"] == "missing"

    summary = artifact(artifact_key(str(out), "summary"))
    assert "| corrupt | 1 |" in summary.data and "| ok | 33 |" in summary.data
    embedded = summary.data.split("data:image/jpeg;base64,", 1)[1].split(")", 1)[0]
    with Image.open(io.BytesIO(base64.b64decode(embedded))) as preview:
        assert preview.format == "JPEG" and max(preview.size) == 384
    failed = json.loads(artifact(artifact_key(str(out), "failed-rows")).data)
    assert [(r["row"], r["status"]) for r in failed] == [(5, "corrupt"), (34, "missing")]

    first_sha = sha(out / "images.npy")
    again = run(csv, root, out)
    assert again.is_completed()
    states = task_states(again.state_details.flow_run_id)
    assert not [k for k in states if k.startswith("partition-")], "done partitions need no task"
    assert "4 reused from committed shards" in artifact(artifact_key(str(out), "summary")).data
    assert sha(out / "images.npy") == first_sha


def test_a_partition_raising_once_is_retried_by_prefect(make_dataset, tmp_path, monkeypatch):
    csv, root, paths = make_dataset(30)
    reference = tmp_path / "ref"
    assert run(csv, root, reference).is_completed()

    flaky = paths[13]
    calls = {"n": 0}
    original = LocalStorage.read

    def read_once_failing(self, path):
        if path == flaky:
            calls["n"] += 1
            if calls["n"] == 1:
                raise TransientError("connection reset (injected)")
        return original(self, path)

    monkeypatch.setattr(LocalStorage, "read", read_once_failing)
    state = run(csv, root, tmp_path / "out", retries=2)
    assert state.is_completed(), state.message
    assert calls["n"] == 2
    assert task_states(state.state_details.flow_run_id)["partition-1"] == ("Completed", 2)
    assert sha(tmp_path / "out/images.npy") == sha(reference / "images.npy")


def test_a_permanent_failure_is_not_retried_and_the_others_are_committed(
    make_dataset, tmp_path, monkeypatch
):
    csv, root, _ = make_dataset(30)
    calls = []
    original = imgbatch.tasks.preprocess.run_partition

    def failing_partition(part, *args, **kw):
        calls.append(part.id)
        if part.id == 1:
            raise PermanentError("bucket says 403 for partition 1 (injected)")
        return original(part, *args, **kw)

    monkeypatch.setattr(imgbatch.tasks.preprocess, "run_partition", failing_partition)
    out = tmp_path / "out"
    state = run(csv, root, out, retries=3)
    assert state.is_failed()
    assert "partition 1" in state.message and "403" in state.message
    assert sorted(calls) == [0, 1, 2], "a PermanentError must not be retried"
    assert (out / "shards/part-00000.done.json").exists()
    assert (out / "shards/part-00002.done.json").exists()
    assert not (out / "shards/part-00001.done.json").exists()
    assert not (out / "images.npy").exists()
    table = json.loads(artifact(artifact_key(str(out), "failed-partitions")).data)
    assert [r["partition"] for r in table] == [1] and "403" in table[0]["reason"]
    assert "rows 10-19" in table[0]["reason"]

    monkeypatch.setattr(imgbatch.tasks.preprocess, "run_partition", original)
    stamps = [(out / f"shards/part-0000{i}.npy").stat().st_mtime_ns for i in (0, 2)]
    state = run(csv, root, out)
    assert state.is_completed(), state.message
    verify_output(str(out))
    again = [(out / f"shards/part-0000{i}.npy").stat().st_mtime_ns for i in (0, 2)]
    assert again == stamps, "only the failed partition is computed again"
    table = json.loads(artifact(artifact_key(str(out), "failed-partitions")).data)
    assert [r["partition"] for r in table] == ["-"] and "none failed" in table[0]["reason"]


def test_subset_of_partitions_then_the_rest(make_dataset, tmp_path):
    csv, root, _ = make_dataset(30)
    out = tmp_path / "out"
    state = run(csv, root, out, partitions=[1])
    assert state.is_completed()
    assert state.result()["assembled"] is False
    done = sorted(p.name for p in (out / "shards").glob("*.done.json"))
    assert done == ["part-00001.done.json"]
    assert not (out / "images.npy").exists()

    stamp = (out / "shards/part-00001.npy").stat().st_mtime_ns
    state = run(csv, root, out)
    assert state.is_completed() and state.result()["assembled"]
    assert (out / "shards/part-00001.npy").stat().st_mtime_ns == stamp
    verify_output(str(out))


def test_unknown_partition_id_fails_the_run_with_a_clear_reason(make_dataset, tmp_path):
    csv, root, _ = make_dataset(12)
    state = run(csv, root, tmp_path / "out", partitions=[5])
    assert state.is_failed()
    assert "out of range" in state.message


def test_global_concurrency_limit_is_honoured(make_dataset, tmp_path, monkeypatch):
    csv, root, _ = make_dataset(40)
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()
    original = imgbatch.tasks.preprocess.run_partition

    def timed(*args, **kw):
        t0 = time.monotonic()
        try:
            return original(*args, **kw)
        finally:
            with lock:
                spans.append((t0, time.monotonic()))

    monkeypatch.setattr(imgbatch.tasks.preprocess, "run_partition", timed)
    with get_client(sync_client=True) as client:
        limit_id = client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=CONCURRENCY_LIMIT, limit=1)
        )
    try:
        state = run(csv, root, tmp_path / "out")
    finally:
        with get_client(sync_client=True) as client:
            client.delete_global_concurrency_limit_by_name(CONCURRENCY_LIMIT)
    assert limit_id
    assert state.is_completed(), state.message
    assert len(spans) == 4
    spans.sort()
    overlaps = [a for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1]]
    assert not overlaps, f"partitions overlapped under a limit of 1: {spans}"


def test_bad_parameters_fail_the_flow_before_any_partition(make_dataset, tmp_path):
    csv, root, _ = make_dataset(5)
    params = {"csv": csv, "images": root, "out": str(tmp_path / "out"), "size": 0}
    state = preprocess_images(params, return_state=True)
    assert state.is_failed() and "greater than 0" in state.message
    state = run(str(tmp_path / "nope.csv"), root, tmp_path / "out")
    assert state.is_failed() and "does not exist" in state.message
    assert not (tmp_path / "out").exists()


def test_images_root_one_folder_off_fails_before_decoding(make_dataset, tmp_path):
    csv, root, paths = make_dataset(6)
    nested = tmp_path / "nested"
    nested.mkdir()
    Path(root).rename(nested / "images")
    state = run(csv, str(nested), tmp_path / "out")
    assert state.is_failed()
    assert "only 0 of 6 images" in state.message and f"first missing: {paths[0]}" in state.message
    assert "one folder too high" in state.message
    assert not (tmp_path / "out/shards").exists() or not any((tmp_path / "out/shards").iterdir())


def test_a_few_missing_files_below_the_threshold_stay_missing_rows(make_dataset, tmp_path):
    csv, root, paths = make_dataset(8, extra=["gone/a.jpg", "gone/b.jpg"])
    state = run(csv, root, tmp_path / "out")
    assert state.is_completed(), state.message
    assert verify_output(str(tmp_path / "out"))["counts"] == {"ok": 8, "missing": 2}
