"""Many partitions against a real Prefect server: 1,000 task runs complete, a rerun makes none."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from uuid import UUID

import numpy as np
import pytest

from imgbatch.flows.preprocess import preprocess_images
from imgbatch.layout import SHARDS_DIR
from imgbatch.output.verify import verify_output
from imgbatch.params import PreprocessParams
from imgbatch.pipeline import preprocess

ROWS = 1000
SIZE = 8


def task_run_names(run_id: UUID) -> list[str]:
    """Names of every task run the server holds for one flow run (read page by page)."""
    from prefect import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId
    from prefect.client.schemas.sorting import TaskRunSort

    only = TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run_id]))
    by_id: dict = {}
    offset = 0
    with get_client(sync_client=True) as client:
        # A stable order (by id); pages can still overlap while the server records new runs,
        # so runs are kept by id, each once.
        while page := client.read_task_runs(
            task_run_filter=only, sort=TaskRunSort.ID_DESC, limit=200, offset=offset
        ):
            by_id.update((tr.id, tr.name) for tr in page)
            offset += len(page)
    return list(by_id.values())


def names_once(run_id: UUID, done, timeout: float = 60.0) -> list[str]:
    """The flow run's task-run names once `done(names)` holds (the server records task runs
    from events, a moment after they ran)."""
    deadline = time.monotonic() + timeout
    while not done(names := task_run_names(run_id)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return names


def partitions_of(names: list[str]) -> list[str]:
    return [n for n in names if n.startswith("partition-")]


def core_images(csv: str, root: str, out: Path) -> bytes:
    """images.npy as the core library makes it in one partition: what 1,000 must equal."""
    preprocess(
        PreprocessParams(
            csv=csv, images=root, out=str(out), size=SIZE, partition_size=ROWS, workers=1
        )
    )
    return (out / "images.npy").read_bytes()


def markers(out: Path) -> dict[str, int]:
    """Each done-marker's mtime: a rerun that recomputed or rewrote a shard changes one."""
    return {p.name: p.stat().st_mtime_ns for p in (out / SHARDS_DIR).glob("*.done.json")}


@pytest.mark.usefixtures("prefect_server")
def test_a_thousand_partitions_complete_and_a_rerun_creates_no_task_runs(make_dataset, tmp_path):
    csv, root, _ = make_dataset(ROWS, min_side=SIZE, max_side=SIZE)
    out = tmp_path / "out"
    params = PreprocessParams(
        csv=csv, images=root, out=str(out), size=SIZE, partition_size=1, workers=1
    )

    t0 = time.perf_counter()
    state = preprocess_images(params, return_state=True)
    seconds = time.perf_counter() - t0
    assert state.is_completed(), state.message
    run = verify_output(str(out))
    assert run["partitions"] == ROWS and run["shape"] == [ROWS, SIZE, SIZE, 3]
    assert run["counts"] == {"ok": ROWS}
    images = np.load(out / "images.npy")
    assert images.reshape(ROWS, -1).any(axis=1).all(), "an ok row is all zeros"
    assert (out / "images.npy").read_bytes() == core_images(csv, root, tmp_path / "core")
    expected = {f"partition-{i}" for i in range(ROWS)}
    first = names_once(state.state_details.flow_run_id, lambda n: set(partitions_of(n)) >= expected)
    assert sorted(partitions_of(first)) == sorted(f"partition-{i}" for i in range(ROWS))
    print(f"1,000-partition run: {seconds:.1f} s")

    before, digest = markers(out), hashlib.sha256((out / "images.npy").read_bytes()).digest()
    again = preprocess_images(params, return_state=True)
    assert again.is_completed(), again.message
    assert again.state_details.flow_run_id != state.state_details.flow_run_id
    names = names_once(
        again.state_details.flow_run_id, lambda n: any(x.startswith("assemble") for x in n)
    )
    assert any(n.startswith("plan") for n in names), names
    assert partitions_of(names) == [], "a no-op rerun made partition task runs"
    assert markers(out) == before and len(before) == ROWS
    assert hashlib.sha256((out / "images.npy").read_bytes()).digest() == digest
