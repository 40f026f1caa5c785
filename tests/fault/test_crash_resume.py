"""Crashes and races around preprocess: a killed run, a killed decode worker, two runs at once.

Every case ends with the same promise: the output verifies and images.npy is byte-identical
to a clean, uninterrupted reference run over the same images.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest

from imgbatch.atomic_files import file_digest
from imgbatch.compute import parallel
from imgbatch.output.shards import shard_paths
from imgbatch.output.verify import verify_output
from imgbatch.params import PreprocessParams
from imgbatch.sampledata import samples

N_IMAGES = 300
PARTITION_SIZE = 20
N_PARTITIONS = N_IMAGES // PARTITION_SIZE
SUBPROCESS_TIMEOUT = 120.0
IMGBATCH = str(Path(sys.executable).with_name("imgbatch"))


@dataclass(frozen=True)
class Dataset:
    csv: str
    root: str
    reference_sha: str


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.002)


def done_ids(out: Path) -> list[int]:
    """Partitions whose done-marker exists."""
    shards = out / "shards"
    if not shards.is_dir():
        return []
    return sorted(int(p.name[5:10]) for p in shards.glob("part-*.done.json"))


def check_shard(out: Path, pid: int) -> None:
    """The shard matches its done-marker: sizes, loadable with the recorded shape, same data."""
    paths = shard_paths(str(out), pid)
    record = json.loads(Path(paths.done).read_text())
    assert record["partition"] == pid
    assert os.path.getsize(paths.npy) == record["npy_bytes"], f"partition {pid}: npy size"
    assert os.path.getsize(paths.parquet) == record["parquet_bytes"], f"partition {pid}: parquet"
    arr = np.load(paths.npy, allow_pickle=False)
    assert arr.dtype == np.uint8 and list(arr.shape) == record["shape"], f"partition {pid}"
    assert arr.shape[0] == record["rows"] == PARTITION_SIZE
    assert hashlib.sha256(np.ascontiguousarray(arr)).hexdigest() == record["data_sha256"]


def stamps(out: Path, pids: list[int]) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of every file of these shards."""
    result = {}
    for pid in pids:
        paths = shard_paths(str(out), pid)
        for path in (paths.npy, paths.parquet, paths.done):
            st = os.stat(path)
            result[path] = (st.st_ino, st.st_mtime_ns)
    return result


def leftover_temps(out: Path) -> list[str]:
    """Temp files of atomic writes still lying in OUT (a finished run removes its own)."""
    return sorted(str(p) for p in out.rglob("*.tmp-*"))


def check_final(out: Path, data: Dataset) -> None:
    """Verifies, equals the reference, and every shard still matches its marker."""
    verify_output(str(out))
    assert file_digest(out / "images.npy")[0] == data.reference_sha
    assert done_ids(out) == list(range(N_PARTITIONS))
    for pid in range(N_PARTITIONS):
        check_shard(out, pid)


@pytest.fixture(scope="module")
def api_url(prefect_server: None) -> str:
    import prefect.settings

    return prefect.settings.PREFECT_API_URL.value()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Dataset:
    """300 small real photos, a CSV, and the sha256 of a clean in-process run's images.npy."""
    from imgbatch.flows.preprocess import preprocess_images

    base = tmp_path_factory.mktemp("crash-data")
    root = base / "images"
    paths = samples.write_tree(root, N_IMAGES, min_side=200, max_side=400)
    csv = samples.write_csv(base / "rows.csv", paths)
    ref = base / "reference"
    params = PreprocessParams(
        csv=str(csv),
        images=str(root),
        out=str(ref),
        partition_size=PARTITION_SIZE,
        executor="threads",
        workers=2,
        retry_delay_seconds=0,
    )
    state = preprocess_images(params, return_state=True)
    assert state.is_completed(), state.message
    verify_output(str(ref))
    return Dataset(str(csv), str(root), file_digest(ref / "images.npy")[0])


def cli_argv(data: Dataset, out: Path, workers: int) -> list[str]:
    return [
        IMGBATCH,
        "preprocess",
        "--csv",
        data.csv,
        "--images",
        data.root,
        "--out",
        str(out),
        "--partition-size",
        str(PARTITION_SIZE),
        "--executor",
        "threads",
        "--workers",
        str(workers),
    ]


def child_env(api_url: str, home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PREFECT_API_URL": api_url,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start CLI runs in their own process group; kill any group still alive at teardown."""
    procs: list[subprocess.Popen] = []

    def start(argv: list[str], env: dict[str, str], name: str) -> subprocess.Popen:
        with open(tmp_path / f"{name}.out", "wb") as so, open(tmp_path / f"{name}.err", "wb") as se:
            proc = subprocess.Popen(
                argv,
                env=env,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=so,
                stderr=se,
            )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def finish(proc: subprocess.Popen, tmp_path: Path, name: str) -> None:
    """Wait for a CLI run and require exit status 0 (its stderr in the failure message)."""
    rc = proc.wait(timeout=SUBPROCESS_TIMEOUT)
    err = (tmp_path / f"{name}.err").read_text(errors="replace")
    assert rc == 0, f"{name} exited {rc}:\n{err[-3000:]}"


def test_run_killed_midway_resumes_without_rewriting_done_shards(
    data: Dataset, api_url: str, spawn, tmp_path: Path
) -> None:
    """SIGKILL the whole CLI run after >= 2 shards; rerun finishes, keeping committed shards."""
    out = tmp_path / "out"
    argv = cli_argv(data, out, workers=1)
    env = child_env(api_url, tmp_path / "prefect-home")
    proc = spawn(argv, env, "killed")
    wait_for(
        lambda: len(done_ids(out)) >= 2 or proc.poll() is not None,
        SUBPROCESS_TIMEOUT,
        "two done-markers",
    )
    assert proc.poll() is None, "the run ended before it could be killed mid-way"
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL

    done = done_ids(out)
    assert 2 <= len(done) < N_PARTITIONS, f"killed too late: {len(done)} shards done"
    for pid in done:
        check_shard(out, pid)
    assert not (out / "images.npy").exists() and not (out / "run.json").exists()
    before = stamps(out, done)

    finish(spawn(argv, env, "rerun"), tmp_path, "rerun")

    assert stamps(out, done) == before, "a committed shard was rewritten by the rerun"
    check_final(out, data)


def decode_workers(me: psutil.Process, ignore: set[int]) -> list[psutil.Process]:
    """Live decode worker processes not in `ignore`: forked by the forkserver, a child of `me`."""
    found = []
    for child in me.children(recursive=True):
        try:
            if (
                child.pid not in ignore
                and child.ppid() != me.pid
                and child.status() != psutil.STATUS_ZOMBIE
                and "multiprocessing.forkserver" in " ".join(child.cmdline())
            ):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture
def fresh_process_pool() -> Iterator[set[int]]:
    """Drop any cached 2-worker process pool; yield the pids alive before the test.

    At teardown, kill decode workers the test left behind, so a stuck one cannot hang the
    session at exit.
    """
    parallel.shutdown()
    me = psutil.Process()
    existing = {p.pid for p in me.children(recursive=True)}
    yield existing
    for proc in decode_workers(me, existing):
        proc.kill()


def retried_partitions(flow_run_id: object) -> list[str]:
    """Names of this flow run's task runs that ran more than once, as the server records them."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return sorted(r.name for r in runs if r.run_count > 1)


def test_decode_worker_killed_mid_partition_is_retried(
    data: Dataset, fresh_process_pool: set[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """SIGKILL a decode worker process once decoding starts; Prefect retries the partition.

    Afterwards every worker must be able to exit: a worker of the broken pool left alive
    keeps that pool's manager thread blocked, and the process would then hang at exit.
    """
    from imgbatch.flows.preprocess import preprocess_images

    me = psutil.Process()
    discarded: list[tuple] = []
    real_discard = parallel.discard

    def spy_discard(*args: object, **kwargs: object) -> None:
        discarded.append(args)
        real_discard(*args, **kwargs)

    monkeypatch.setattr(parallel, "discard", spy_discard)
    killed: list[int] = []
    stop = threading.Event()

    def kill_first_worker() -> None:
        """The fresh pool forks its workers on first submit, i.e. once decoding starts."""
        while not stop.is_set():
            for proc in decode_workers(me, fresh_process_pool):
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    continue
                killed.append(proc.pid)
                return
            time.sleep(0.001)

    watcher = threading.Thread(target=kill_first_worker, daemon=True)
    watcher.start()
    out = tmp_path / "out"
    try:
        params = PreprocessParams(
            csv=data.csv,
            images=data.root,
            out=str(out),
            partition_size=PARTITION_SIZE,
            executor="processes",
            workers=2,
            retries=2,
            retry_delay_seconds=0,
        )
        state = preprocess_images(params, return_state=True)
    finally:
        stop.set()
        watcher.join(timeout=10)

    assert killed, "no decode worker process was seen"
    assert discarded, "the killed worker never surfaced as a broken pool"
    assert state.is_completed(), state.message
    check_final(out, data)
    assert not leftover_temps(out)
    flow_run_id = state.state_details.flow_run_id
    wait_for(lambda: bool(retried_partitions(flow_run_id)), 30, "a retried partition")

    parallel.shutdown()  # shut the live pool down: now every worker should exit
    deadline = time.monotonic() + 20
    while (alive := decode_workers(me, fresh_process_pool)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive, (
        f"decode workers {[p.pid for p in alive]} never exited after their pools were shut "
        "down: a worker of the broken pool escaped its terminate(), so the pool's manager "
        "thread blocks joining it and the process would hang at exit"
    )


def test_a_run_on_an_output_another_run_is_writing_stops_at_once(
    data: Dataset, api_url: str, spawn, tmp_path: Path
) -> None:
    """While another process writes OUT (it holds the output lock), a CLI run on the same OUT
    stops at once, exit 2, with one line naming the holder, and writes nothing; once the
    holder is done the same command completes."""
    from imgbatch.output.writer_lock import output_lock

    out = tmp_path / "out"
    env = child_env(api_url, tmp_path / "prefect-home")
    with output_lock(str(out), "flow run other-writer (test)"):
        second = spawn(cli_argv(data, out, workers=2), env, "second")
        assert second.wait(timeout=SUBPROCESS_TIMEOUT) == 2
    err = (tmp_path / "second.err").read_text(errors="replace")
    line = [x for x in err.splitlines() if x.startswith("imgbatch preprocess: error:")]
    assert len(line) == 1, err[-2000:]
    assert f"is being written by pid {os.getpid()}" in line[0] and "other-writer" in line[0]
    assert not (out / "shards").exists() and not (out / "plan.parquet").exists()
    finish(spawn(cli_argv(data, out, workers=2), env, "after"), tmp_path, "after")
    check_final(out, data)
    assert not leftover_temps(out)
