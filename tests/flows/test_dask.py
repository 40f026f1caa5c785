"""Scale-out: the same flow on a Dask cluster (prefect-dask) gives the same bytes."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import psutil
import pytest

from imgbatch.flows.preprocess import preprocess_images
from imgbatch.layout import SHARDS_DIR
from imgbatch.params import PreprocessParams

distributed = pytest.importorskip("distributed")
prefect_dask = pytest.importorskip("prefect_dask")


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cluster():
    """Two worker processes, one thread each: what a small real cluster looks like."""
    return distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )


def on_dask(address: str, params: PreprocessParams):
    """The flow as a deployment run calls it: the cluster named by a parameter."""
    dask_params = params.model_copy(update={"dask_address": address})
    return preprocess_images(dask_params, return_state=True)


def local_run(make_dataset, tmp_path: Path, rows: int, partition_size: int) -> dict:
    """A dataset (plus one missing row) run locally on threads into tmp_path/local; returns
    the parameters to run it again elsewhere."""
    csv, root, _ = make_dataset(rows, extra=["missing.jpg"])
    params = dict(csv=csv, images=root, partition_size=partition_size, workers=1)
    local = preprocess_images(
        PreprocessParams(out=str(tmp_path / "local"), **params), return_state=True
    )
    assert local.is_completed(), local.message
    return params


def assert_same_as_local(state, rows: int, tmp_path: Path) -> None:
    """The Dask run completed with the local run's counts and bytes."""
    assert state.is_completed(), state.message
    assert state.result()["counts"] == {"ok": rows, "missing": 1}
    for name in ("images.npy", "index.parquet"):
        assert sha(tmp_path / "dask" / name) == sha(tmp_path / "local" / name), name


@pytest.mark.usefixtures("prefect_server")
def test_dask_cluster_output_equals_local_threads(make_dataset, tmp_path):
    params = local_run(make_dataset, tmp_path, 30, 8)
    with (
        cluster() as c,
        distributed.Client(c) as client,
        distributed.get_task_stream(client) as stream,
    ):
        state = on_dask(c.scheduler_address, PreprocessParams(out=str(tmp_path / "dask"), **params))
    assert_same_as_local(state, 30, tmp_path)
    ran = [t for t in stream.data if "partition" in str(t.get("key"))]
    assert len(ran) == 4, f"the 4 partitions ran on the cluster: {stream.data}"


class KillAtFirstShard(threading.Thread):
    """SIGKILLs one Dask worker process as soon as the first shard of `out` is committed."""

    def __init__(self, out: Path, pid: int) -> None:
        super().__init__(daemon=True)
        self.out, self.pid = out, pid
        self.done_at_kill: int | None = None

    def run(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = list((self.out / SHARDS_DIR).glob("*.done.json"))
            if done:
                psutil.Process(self.pid).kill()
                self.done_at_kill = len(done)
                return
            time.sleep(0.005)


@pytest.mark.usefixtures("prefect_server")
def test_a_dask_worker_killed_mid_run_still_gives_the_local_bytes(make_dataset, tmp_path):
    params = local_run(make_dataset, tmp_path, 48, 4)
    with cluster() as c, distributed.Client(c) as client:
        victim = next(iter(client.run(lambda: psutil.Process().pid).values()))
        killer = KillAtFirstShard(tmp_path / "dask", victim)
        killer.start()
        state = on_dask(c.scheduler_address, PreprocessParams(out=str(tmp_path / "dask"), **params))
        killer.join(5)
    assert killer.done_at_kill is not None, "no shard was committed: the worker was not killed"
    assert killer.done_at_kill < 13, "all 13 shards were done before the kill: not mid-run"
    assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == "zombie"
    assert_same_as_local(state, 48, tmp_path)
