"""Compute one partition: read its images, standardize them on the shared pools, commit a shard.

Reading and decoding overlap in small chunks: reads of the next chunks run on the I/O pool
while earlier chunks decode, and only a bounded window of chunks is in flight per partition
(`Window`), so memory stays bounded whatever the partition size. A bad image becomes a status
row; only storage trouble that may pass (TransientError) or a write failure fails the
partition, which the orchestrator then retries.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import CancelledError, Executor, Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from imgbatch.compute import parallel
from imgbatch.compute.reading import IMAGES_PER_CHUNK, Fetched, Reader, Window
from imgbatch.errors import TransientError
from imgbatch.output import shards
from imgbatch.pixels.images import Outcome, blank, standardize
from imgbatch.pixels.spec import ImageSpec
from imgbatch.plan.run_plan import PartitionPlan, read_rows
from imgbatch.storage.base import Storage, open_storage
from imgbatch.upstream import pool_shut_down


@dataclass(frozen=True)
class PartitionSettings:
    """What every partition of one run shares, resolved once at the start of the run (by
    imgbatch.pipeline from the checked parameters, so nothing here is checked again).
    Small and picklable: handed to every partition task (and Dask worker) as is."""

    plan_file: str
    images: str
    out: str
    spec: ImageSpec
    executor: str  # "threads" or "processes", resolved from "auto"
    workers: int


def standardize_many(items: Sequence[Fetched], spec: ImageSpec) -> tuple[np.ndarray, list[Outcome]]:
    """Standardize a chunk; runs in a pool worker (thread or process)."""
    out = np.empty((len(items), spec.size, spec.size, 3), dtype=np.uint8)
    outcomes = []
    for i, item in enumerate(items):
        if isinstance(item, Outcome):
            out[i] = blank(spec)
            outcomes.append(item)
        else:
            out[i], outcome = standardize(item, spec)
            outcomes.append(outcome)
    return out, outcomes


def compute(
    paths: Sequence[str],
    storage: Storage,
    spec: ImageSpec,
    cpu: Executor,
    io: Reader | Executor,
    window: Window | None = None,
) -> tuple[np.ndarray, list[Outcome]]:
    """Standardize every path, in order; reads (on `io`: a Reader, or an I/O thread pool)
    run ahead of decoding within `window`."""
    window = window or Window()
    reader = io if isinstance(io, Reader) else Reader(io, 0)
    n = len(paths)
    images = np.zeros((n, spec.size, spec.size, 3), dtype=np.uint8)
    outcomes: list[Outcome] = [Outcome("error")] * n
    todo = deque(range(0, n, IMAGES_PER_CHUNK))
    reads: deque[tuple[int, list[Future]]] = deque()
    decodes: deque[tuple[int, Future]] = deque()
    try:
        while todo or reads or decodes:
            while todo and len(reads) < window.reading:
                start = todo.popleft()
                chunk = paths[start : start + IMAGES_PER_CHUNK]
                reads.append((start, reader.submit(storage, chunk)))
            if reads and len(decodes) < window.decoding:
                start, futures = reads.popleft()
                items = reader.collect(futures)
                decodes.append((start, cpu.submit(standardize_many, items, spec)))
            else:
                start, fut = decodes.popleft()
                arr, outs = fut.result()
                images[start : start + len(outs)] = arr
                outcomes[start : start + len(outs)] = outs
    finally:
        for _, futures in reads:
            for f in futures:
                f.cancel()
    return images, outcomes


def run_partition(part: PartitionPlan, settings: PartitionSettings) -> dict:
    """Commit the shard for `part` unless an identical one is already done; return its summary."""
    out, kind, n = settings.out, settings.executor, settings.workers
    record = shards.done_record(out, part.id, part.fingerprint)
    if record is not None:
        return summary(record, computed=False, seconds=0.0)
    t0 = time.perf_counter()
    storage = open_storage(settings.images)
    paths = read_rows(settings.plan_file, part.id)
    cpu = parallel.decode_pool(kind, n)
    reader = Reader.for_decoders(kind, storage.remote, n)
    window = Window.sized(reader.threads, n)
    try:
        images, outcomes = compute(paths, storage, settings.spec, cpu, reader, window)
    except BrokenProcessPool as exc:  # a dead fetch process is reported by the reader
        parallel.discard(kind, n, cpu)
        raise TransientError(f"a decode worker process died: {exc}") from exc
    except (CancelledError, RuntimeError) as exc:
        if not isinstance(exc, CancelledError) and not pool_shut_down(exc):
            raise
        raise TransientError(f"a pool was replaced mid-partition: {exc}") from exc
    except OSError as exc:  # e.g. "handle is closed": the pipe of a pool discarded meanwhile
        if not parallel.replaced(cpu, kind, n):
            raise
        raise TransientError(f"a pool was replaced mid-partition: {exc}") from exc
    index = index_table(part, paths, outcomes)
    record = shards.write_shard(out, part.id, part.fingerprint, images, index)
    return summary(record, computed=True, seconds=time.perf_counter() - t0)


def index_table(part: PartitionPlan, paths: list[str], outcomes: list[Outcome]) -> pa.Table:
    """The shard's index rows: one per CSV row of the partition, with its outcome."""
    return pa.table(
        {
            "row": np.arange(part.start, part.stop, dtype=np.int64),
            "image_path": pa.array(paths, pa.string()),
            "status": pa.array([o.status for o in outcomes], pa.string()),
            "error": pa.array([o.error for o in outcomes], pa.string()),
            "width": np.array([o.width for o in outcomes], dtype=np.int32),
            "height": np.array([o.height for o in outcomes], dtype=np.int32),
            "partition": np.full(len(paths), part.id, dtype=np.int32),
        }
    )


def summary(record: dict, computed: bool, seconds: float) -> dict:
    """The small dict a partition hands back to the orchestrator."""
    return {
        "partition": record["partition"],
        "rows": record["rows"],
        "counts": record["counts"],
        "computed": computed,
        "seconds": round(seconds, 3),
    }
