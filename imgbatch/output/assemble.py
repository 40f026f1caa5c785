"""Assemble committed shards, in partition order, into the outputs of docs/ARCHITECTURE.md.

images.npy is written by streaming each shard's bytes after a .npy header (no memory map:
a map's dirty pages count against the process, a plain write does not), hashed on the way.
Peak memory is one shard, whatever N is. A missing, stale or damaged shard makes assembly
refuse (and forget that shard so a rerun recomputes it): never an N-k array.

On a store that composes (gs://), images.npy is instead the shards' headerless pixel
objects concatenated on the bucket behind a header object (GCS compose, checked by crc32c),
so the pixels never pass through this machine; streamed as above only when the bucket
refuses compose. run.json then records the array's crc32c (and no sha256, which would need
every byte read here: docs/decisions/compose-images.md).

The four outputs are staged and published as one set (the store's publication()): a crash leaves
the old set or the new one. run.json is the commit record: it names the dataset the set was
made from and the sha256 (or crc32c) and size of the other three files.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import pyarrow.parquet as pq

from imgbatch.atomic_files import described_write_errors, write_json
from imgbatch.errors import PermanentError
from imgbatch.layout import IMAGES, INDEX, NORMALIZED, OUTPUT_FORMAT, PREVIEW, RUN
from imgbatch.output import shards
from imgbatch.output.preview import ReadRange, file_range, write_preview
from imgbatch.outstore.base import OutputStore, Part, PartsChanged, Publication, open_output
from imgbatch.pixels.spec import ImageSpec
from imgbatch.plan.run_plan import PartitionPlan, code_version

# What the run that assembles did with the partitions: handed in with its timings (the
# pipeline's), recorded at the top of run.json.
PARTITION_COUNTS = ("computed_partitions", "reused_partitions")
READ_AHEAD = 16  # done-records or index tables read at once from a remote store
T = TypeVar("T")
R = TypeVar("R")


class ShardError(PermanentError):
    """A shard is missing, stale or damaged: rerun to recompute it."""


class DamagedShard(ShardError):
    """A committed shard that failed its check while assembling; its done-marker is removed,
    so computing `partition` again mends it (the run that found it does, at once)."""

    def __init__(self, partition: int, what: str) -> None:
        super().__init__(f"{what} of partition {partition} is damaged; rerun to recompute it")
        self.partition, self.what = partition, what


def done_records(out: str, parts: list[PartitionPlan]) -> dict[int, dict | None]:
    """Each partition's done-marker (None when not done for its fingerprint), read once."""
    store = open_output(out)
    found = ahead(store, lambda p: shards.done_record(store, p.id, p.fingerprint), parts)
    return {p.id: record for p, record in zip(parts, found, strict=True)}


def ahead(store: OutputStore, fn: Callable[[T], R], items: list[T]) -> Iterator[R]:
    """fn(item) for each item, in order; on a remote store up to READ_AHEAD at once on
    threads, since each is a few round trips (memory: READ_AHEAD results at most)."""
    if not store.remote:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(READ_AHEAD) as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= READ_AHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def missing_partitions(out: str, parts: list[PartitionPlan]) -> list[int]:
    """Ids of partitions whose shard is not done for the current fingerprint."""
    return [pid for pid, record in done_records(out, parts).items() if record is None]


def up_to_date(out: str, parts: list[PartitionPlan], dataset: dict | None = None) -> dict | None:
    """run.json if the published set already holds exactly these shards of this dataset and
    every file has its recorded size (no publish under way), else None."""
    store = open_output(out)
    run = store.read_json(RUN)
    if (
        not run
        or run.get("format") != OUTPUT_FORMAT
        or run.get("shards") != [p.fingerprint for p in parts]
        or run.get("dataset") != dataset
    ):
        return None
    files = run.get("files") or {}
    if set(files) != {IMAGES, INDEX, PREVIEW} or not store.settled(files):
        return None
    return run


def assemble(
    out: str,
    parts: list[PartitionPlan],
    n_rows: int,
    spec: ImageSpec,
    params: dict,
    timings: dict | None = None,
    dataset: dict | None = None,
) -> dict:
    """Publish images.npy, index.parquet, preview.png and run.json as one set; return run.json.

    `dataset` is ownership.dataset_identity(...) of this run, recorded as run["dataset"].
    Call it holding writer_lock.output_lock(out, ...), after the store's recover().
    """
    run = up_to_date(out, parts, dataset)
    if run is not None:
        return run
    store = open_output(out)
    records = done_records(out, parts)
    missing = [pid for pid, record in records.items() if record is None]
    if missing:
        raise ShardError(f"partitions not done, cannot assemble: {_ids(missing)}")
    t0 = time.perf_counter()
    timings = dict(timings or {})
    made = {k: timings.pop(k) for k in PARTITION_COUNTS if k in timings}
    shape = (n_rows, spec.size, spec.size, 3)
    counts: Counter[str] = Counter()
    with described_write_errors(out), store.publication() as pub:
        digest = _stage_data(pub, store, parts, records, shape, counts)
        run = {
            "format": OUTPUT_FORMAT,
            "dataset": dataset,
            **_content(parts, params, shape, counts),
            **made,
            "files": pub.records(),
            **digest,
            "images_bytes": pub.staged[IMAGES].bytes,
            "timings": {**timings, "assemble_seconds": round(time.perf_counter() - t0, 3)},
        }
        write_json(pub.new(RUN), run)
        pub.done(RUN)
        pub.commit(remove=(NORMALIZED,))
    return run


def _stage_data(
    pub: Publication, store: OutputStore, parts: list[PartitionPlan], records: dict, shape, counts
) -> dict:
    """Stage images.npy, index.parquet and preview.png; return the array's digests for
    run.json: images_sha256 where its bytes passed through here, images_crc32c where the
    store keeps one."""
    head = npy_header(shape)
    read = _composed(pub, store, parts, records, head) if store.composes else None
    if read is None:
        digest = _write_images(pub.new(IMAGES), store, parts, records, head, shape[1])
        pub.done(IMAGES, digest)
        read = file_range(pub.paths[IMAGES])
    _write_index(pub.new(INDEX), store, parts, shape[0], counts)
    pub.done(INDEX)
    write_preview(pub.new(PREVIEW), shape, len(head), read, pub.paths[INDEX])
    pub.done(PREVIEW)
    record = pub.records()[IMAGES]
    found = {"images_sha256": record.get("sha256"), "images_crc32c": record.get("crc32c")}
    return {k: v for k, v in found.items() if v}


def _composed(
    pub: Publication, store: OutputStore, parts: list[PartitionPlan], records: dict, head: bytes
) -> ReadRange | None:
    """images.npy composed by the store from the shards' raw pixels; a reader of its bytes,
    or None when the store refused (the caller streams). A part found changed since its
    done-record was read is forgotten (DamagedShard: the run computes it again)."""
    sources = []
    for p in parts:
        record, name = records[p.id], shards.shard_names(p.id).raw
        version = (record.get("versions") or {}).get("raw")
        sources.append(Part(name, version, record["raw_bytes"], record["raw_crc32c"]))
    try:
        staged = pub.compose(IMAGES, head, sources)
    except PartsChanged as exc:
        changed = [p.id for p in parts if shards.shard_names(p.id).raw in exc.names]
        if not changed:
            raise
        for pid in changed:
            shards.invalidate(store.url, pid)
        raise DamagedShard(changed[0], "shard") from exc
    if staged is None:
        return None
    generation = pub.records()[IMAGES]["generation"]
    return lambda start, length: store.read_range(IMAGES, start, length, generation)


def _content(parts: list[PartitionPlan], params: dict, shape: tuple, counts: Counter) -> dict:
    """What run.json says about the array: code, parameters, shape, counts, shards."""
    return {
        "code_version": code_version(),
        "params": params,
        "rows": shape[0],
        "shape": list(shape),
        "counts": dict(sorted(counts.items())),
        "partitions": len(parts),
        "shards": [p.fingerprint for p in parts],
    }


def npy_header(shape: tuple) -> bytes:
    """The .npy header of a uint8 C-order array of `shape` (format 2.0, as numpy writes it)."""
    f = io.BytesIO()
    header = {"descr": "|u1", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_2_0(f, header)
    return f.getvalue()


def _write_images(
    path: str, store: OutputStore, parts: list[PartitionPlan], records: dict, head: bytes, size
) -> str:
    """Stream the .npy header and every shard's bytes into `path`; return the sha256."""
    digest = hashlib.sha256(head)
    with open(path, "wb") as f:
        f.write(head)
        for p in parts:
            data = _verified_shard(store, p, records[p.id], size)
            f.write(data)
            digest.update(data)
            del data
    return digest.hexdigest()


def _verified_shard(store: OutputStore, p: PartitionPlan, record: dict, size: int) -> memoryview:
    """The shard's image bytes (an .npy's, or headerless), checked against its done-marker."""
    kind, name = shards.shard_names(p.id).data(store)
    version = (record.get("versions") or {}).get(kind)
    try:
        with store.open_read(name, version) as f:
            if kind == "raw":
                arr = np.frombuffer(f.read(), dtype=np.uint8).reshape(-1, size, size, 3)
            else:
                arr = np.load(f, allow_pickle=False)
        ok = (
            arr.dtype == np.uint8
            and arr.shape == (p.stop - p.start, size, size, 3)
            and hashlib.sha256(arr).hexdigest() == record["data_sha256"]
        )
    except (OSError, ValueError):
        ok = False
    if not ok:
        shards.invalidate(store.url, p.id)
        raise DamagedShard(p.id, "shard")
    return memoryview(np.ascontiguousarray(arr)).cast("B")


def _write_index(
    path: str, store: OutputStore, parts: list[PartitionPlan], n_rows: int, counts: Counter
) -> None:
    """Concatenate the shards' index tables into `path`, checking each covers its rows."""
    written = 0
    writer = None
    tables = ahead(store, lambda p: store.read_parquet(shards.shard_names(p.id).parquet), parts)
    try:
        for p, table in zip(parts, tables, strict=True):
            rows = table.column("row").to_numpy()
            if len(rows) != p.stop - p.start or rows[0] != p.start or rows[-1] != p.stop - 1:
                shards.invalidate(store.url, p.id)
                raise DamagedShard(p.id, "index")
            counts.update(table.column("status").to_pylist())
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
            written += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    if written != n_rows:
        raise ShardError(f"index has {written} rows, the CSV {n_rows}")


def _ids(ids: list[int]) -> str:
    shown = ", ".join(map(str, ids[:20]))
    return shown + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
