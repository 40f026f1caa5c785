"""Process-wide worker pools: one for decoding (CPU), one for reading (I/O).

Every partition running in this process shares them, so concurrent partitions never
oversubscribe the cores. Pillow releases the GIL in decode and resize, so threads scale on
a few cores; past that threads stop scaling and processes keep going, so `auto` picks
processes on bigger machines (docs/decisions/threads-then-processes.md;
`python -m benchmarks.throughput` measures it on the machine at hand).

The I/O pool follows the decode pool: a read from object storage is a round trip (tens of
milliseconds for a small GCS object) during which a thread only waits, so remote storage gets
IO_PER_WORKER threads per decode worker, between IO_MIN and IO_MAX; local files need few.
With decoding on processes, remote reads run in a few fetch processes (`fetch_pool`), since
the CPU each GET costs would otherwise cap one process's GET rate below the decoders' rate.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
import threading
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Literal

ExecutorKind = Literal["auto", "threads", "processes"]
# Up to this many workers threads are as fast as processes and cost no start-up.
THREADS_UP_TO = 4
# A thread waiting on GETs of GCS's small-object latency fetches a few dozen images/s, fewer
# than one decode worker standardizes, so each worker gets IO_PER_WORKER threads
# (`python -m benchmarks.gcs_read` measures both rates, with the latency it adds).
IO_PER_WORKER = 16
IO_MIN, IO_MAX = 32, 256
LOCAL_IO_MAX = 8
# Every remote read costs this process CPU under one GIL, which caps one process's GET rate
# not far above what 16 decode processes consume (`python -m benchmarks.gcs_read`: "CPU per
# GET" and "GETs/s"). With process decoding, reads are spread over one fetch process per
# DECODERS_PER_FETCHER workers, each using a fraction of a core.
DECODERS_PER_FETCHER = 4

_lock = threading.Lock()
_pools: dict[tuple[str, int], Executor] = {}


def default_workers() -> int:
    """Cores this process may use (respects CPU affinity, e.g. in containers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def resolve(kind: str, workers: int | None) -> tuple[str, int]:
    """(threads|processes, worker count) for the user's choice, already checked by
    imgbatch.params: `auto` and no worker count resolved for this machine."""
    n = default_workers() if workers is None else workers
    if kind == "auto":
        kind = "threads" if n <= THREADS_UP_TO else "processes"
    return kind, n


def ignore_interrupts() -> None:
    """In a pool process: a Ctrl-C at the terminal reaches the whole process group, and the
    command, not its workers, decides what stops (the command abandons them)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _get(kind: str, n: int) -> Executor:
    with _lock:
        pool = _pools.get((kind, n))
        if pool is None:
            if kind in ("processes", "fetch"):
                ctx = multiprocessing.get_context("forkserver")
                pool = ProcessPoolExecutor(n, mp_context=ctx, initializer=ignore_interrupts)
            else:
                pool = ThreadPoolExecutor(n, thread_name_prefix=f"imgbatch-{kind}")
            _pools[(kind, n)] = pool
        return pool


def decode_pool(kind: str = "auto", workers: int | None = None) -> Executor:
    """The shared CPU pool for this (kind, workers)."""
    return _get(*resolve(kind, workers))


def io_threads(remote: bool, decode_workers: int) -> int:
    """I/O threads for `decode_workers` decoders reading remote (True) or local storage."""
    if remote:
        return min(max(decode_workers * IO_PER_WORKER, IO_MIN), IO_MAX)
    return min(max(decode_workers, 2), LOCAL_IO_MAX)


def io_pool(workers: int) -> Executor:
    """The shared, bounded I/O thread pool of this size (reads from disk or object storage)."""
    return _get("io", workers)


def fetch_processes(kind: str, remote: bool, decode_workers: int) -> int:
    """Processes that read for the decoders; 0 means: read on this process's I/O threads."""
    if kind != "processes" or not remote:
        return 0
    return -(-decode_workers // DECODERS_PER_FETCHER)


def fetch_pool(processes: int) -> Executor:
    """The shared pool of fetch processes (each reads on its own I/O threads)."""
    return _get("fetch", processes)


def replaced(pool: Executor, kind: str, workers: int) -> bool:
    """True when `pool` is no longer the shared one for (kind, workers): another partition
    discarded it after one of its worker processes died."""
    with _lock:
        return _pools.get((kind, workers)) is not pool


def discard(kind: str, workers: int, pool: Executor) -> None:
    """Drop `pool` after one of its worker processes died, so the next call builds afresh.

    Only that pool: a partition noticing late must not shut down the fresh pool another
    partition's retry already built. Its surviving workers are killed, since a worker that
    started while the pool was being marked broken is never terminated and would keep the
    interpreter from exiting.
    """
    with _lock:
        if _pools.get((kind, workers)) is pool:
            del _pools[(kind, workers)]
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.kill()
    pool.shutdown(wait=False, cancel_futures=True)


@atexit.register
def shutdown() -> None:
    with _lock:
        for pool in _pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        _pools.clear()
