"""Assemble committed shards, in partition order, into the outputs of docs/ARCHITECTURE.md.

images.npy is written by streaming each shard's bytes after a .npy header (no memory map:
a map's dirty pages count against the process, a plain write does not), hashed on the way.
Peak memory is one shard, whatever N is. A missing, stale or damaged shard makes assembly
refuse (and forget that shard so a rerun recomputes it): never an N-k array.

The four outputs are staged and published as one set (the store's publication()): a crash leaves
the old set or the new one. run.json is the commit record: it names the dataset the set was
made from and the sha256 and size of the other three files.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter

import numpy as np
import pyarrow.parquet as pq

from imgbatch.atomic_files import described_write_errors, write_json
from imgbatch.errors import PermanentError
from imgbatch.layout import IMAGES, INDEX, NORMALIZED, OUTPUT_FORMAT, PREVIEW, RUN
from imgbatch.output import shards
from imgbatch.output.preview import write_preview
from imgbatch.outstore.base import OutputStore, Publication, open_output
from imgbatch.pixels.spec import ImageSpec
from imgbatch.plan.run_plan import PartitionPlan, code_version

# What the run that assembles did with the partitions: handed in with its timings (the
# pipeline's), recorded at the top of run.json.
PARTITION_COUNTS = ("computed_partitions", "reused_partitions")


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
    return {p.id: shards.done_record(store, p.id, p.fingerprint) for p in parts}


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
            "images_sha256": digest,
            "images_bytes": pub.staged[IMAGES].bytes,
            "timings": {**timings, "assemble_seconds": round(time.perf_counter() - t0, 3)},
        }
        write_json(pub.new(RUN), run)
        pub.done(RUN)
        pub.commit(remove=(NORMALIZED,))
    return run


def _stage_data(
    pub: Publication, store: OutputStore, parts: list[PartitionPlan], records: dict, shape, counts
) -> str:
    """Stage images.npy, index.parquet and preview.png; return the array file's sha256."""
    digest = _write_images(pub.new(IMAGES), store, parts, records, shape)
    pub.done(IMAGES, digest)
    _write_index(pub.new(INDEX), store, parts, shape[0], counts)
    pub.done(INDEX)
    write_preview(pub.new(PREVIEW), pub.paths[IMAGES], pub.paths[INDEX])
    pub.done(PREVIEW)
    return digest


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


def _write_images(
    path: str, store: OutputStore, parts: list[PartitionPlan], records: dict, shape: tuple
) -> str:
    """Stream the .npy header and every shard's bytes into `path`; return the sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        np.lib.format.write_array_header_2_0(
            f, {"descr": "|u1", "fortran_order": False, "shape": shape}
        )
        f.flush()
        with open(path, "rb") as h:
            digest.update(h.read())
        for p in parts:
            data = _verified_shard(store, p, records[p.id], shape[1])
            f.write(data)
            digest.update(data)
            del data
    return digest.hexdigest()


def _verified_shard(store: OutputStore, p: PartitionPlan, record: dict, size: int) -> memoryview:
    """The shard's raw image bytes, checked against its done-marker."""
    name = shards.shard_names(p.id).npy
    version = (record.get("versions") or {}).get("npy")
    try:
        with store.open_read(name, version) as f:
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
    try:
        for p in parts:
            table = store.read_parquet(shards.shard_names(p.id).parquet)
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
