"""Scale-out: the same flow on a Dask cluster (prefect-dask) gives the same bytes, also on a
cluster whose machines share nothing but the bucket."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from helpers.gcs import machine

from imgbatch.flows.preprocess import preprocess_images
from imgbatch.layout import SHARDS_DIR
from imgbatch.params import PreprocessParams
from imgbatch.pipeline import preprocess
from imgbatch.sampledata import samples

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


def local_done(out: Path) -> Callable[[], int]:
    """Counts the committed shards of a local OUT."""
    return lambda: len(list((out / SHARDS_DIR).glob("*.done.json")))


class KillAtFirstShard(threading.Thread):
    """SIGKILLs one Dask worker process as soon as `committed()` counts a first shard."""

    def __init__(self, committed: Callable[[], int], pid: int) -> None:
        super().__init__(daemon=True)
        self.committed, self.pid = committed, pid
        self.done_at_kill: int | None = None

    def run(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = self.committed()
            if done:
                psutil.Process(self.pid).kill()
                self.done_at_kill = done
                return
            time.sleep(0.005)


@pytest.mark.usefixtures("prefect_server")
def test_a_dask_worker_killed_mid_run_still_gives_the_local_bytes(make_dataset, tmp_path):
    params = local_run(make_dataset, tmp_path, 48, 4)
    with cluster() as c, distributed.Client(c) as client:
        victim = next(iter(client.run(lambda: psutil.Process().pid).values()))
        killer = KillAtFirstShard(local_done(tmp_path / "dask"), victim)
        killer.start()
        state = on_dask(c.scheduler_address, PreprocessParams(out=str(tmp_path / "dask"), **params))
        killer.join(5)
    assert killer.done_at_kill is not None, "no shard was committed: the worker was not killed"
    assert killer.done_at_kill < 13, "all 13 shards were done before the kill: not mid-run"
    assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == "zombie"
    assert_same_as_local(state, 48, tmp_path)


@contextmanager
def machines_sharing_only_the_bucket(tmp_path: Path, n: int, storage: str) -> Iterator[str]:
    """A scheduler (a LocalCluster with no worker of its own) and `n` `dask worker` processes,
    each a "machine": its own working directory, TMPDIR, Dask local directory and PREFECT_HOME,
    the bucket (the emulator at `storage`) the one thing they share. Yields the scheduler's
    address."""
    with distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=None) as c:
        procs = []
        for i in range(n):
            home, env = machine(tmp_path, f"machine-{i}", storage)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", c.scheduler_address,
                 "--nthreads", "1", "--no-dashboard", "--local-directory", str(home / "dask")],
                cwd=home, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
        try:
            yield c.scheduler_address
        finally:
            for proc in procs:
                proc.terminate()  # the nanny stops its worker process first
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.mark.usefixtures("prefect_server")
def test_a_cluster_sharing_only_the_bucket_survives_a_killed_worker(gcs, tmp_path):
    """CSV, images and OUT on gs://; one worker SIGKILLed once a first shard is committed."""
    rows, partition_size = 40, 4
    paths = samples.write_tree(tmp_path / "images", rows, seed=5, min_side=48, max_side=160)
    csv = samples.write_csv(tmp_path / "rows.csv", [*paths, "missing.jpg"])
    bucket = gcs.client().bucket(gcs.name)
    for p in paths:
        bucket.blob(f"images/{p}").upload_from_filename(tmp_path / "images" / p)
    bucket.blob("rows.csv").upload_from_filename(csv)
    options = dict(partition_size=partition_size, workers=1)
    preprocess(PreprocessParams(csv=str(csv), images=str(tmp_path / "images"),
                                out=str(tmp_path / "local"), **options))  # fmt: skip
    params = PreprocessParams(
        csv=gcs.url("rows.csv"), images=gcs.url("images"), out=gcs.url("out"), **options
    )
    committed = lambda: sum(  # noqa: E731
        b.name.endswith(".done.json") for b in gcs.client().list_blobs(gcs.name, prefix="out/")
    )
    with (
        machines_sharing_only_the_bucket(tmp_path, 2, gcs.emulator_url) as address,
        distributed.Client(address) as client,
    ):
        client.wait_for_workers(2, timeout=60)
        homes = [tmp_path / f"machine-{i}" for i in range(2)]
        assert sorted(client.run(os.getcwd).values()) == [str(h) for h in homes]
        assert sorted(client.run(tempfile.gettempdir).values()) == [str(h / "tmp") for h in homes]
        victim = next(iter(client.run(lambda: psutil.Process().pid).values()))
        killer = KillAtFirstShard(committed, victim)
        killer.start()
        state = on_dask(address, params)
        killer.join(5)
    assert killer.done_at_kill is not None, "no shard was committed: the worker was not killed"
    assert killer.done_at_kill < 11, "all 11 shards were done before the kill: not mid-run"
    assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == "zombie"
    assert state.is_completed(), state.message
    assert state.result()["counts"] == {"ok": rows, "missing": 1}
    array = bucket.blob("out/images.npy").download_as_bytes()
    assert array == (tmp_path / "local" / "images.npy").read_bytes()
