"""One partition's committed output: part-NNNNN.npy + .parquet + .done.json.

A shard is done only when all three exist and the done-marker (written last, atomically)
holds the expected fingerprint and the byte sizes of the other two. The marker also keeps
the sha256 of the image data so assembly can refuse a damaged shard.

On a store that composes (gs://) the pixels are kept headerless instead, part-NNNNN.raw,
with their crc32c in the marker: images.npy is then those objects concatenated on the
bucket behind a header (docs/decisions/compose-images.md).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from imgbatch.errors import WriteError
from imgbatch.layout import SHARDS_DIR
from imgbatch.outstore.base import OutputStore, Stat, json_bytes, open_output
from imgbatch.plan.run_plan import PartitionPlan

INDEX_COLUMNS = ("row", "image_path", "status", "error", "width", "height", "partition")


@dataclass(frozen=True)
class ShardPaths:
    npy: str
    parquet: str
    done: str
    raw: str  # the pixels without a header, kept instead of `npy` where the store composes

    def data(self, store: OutputStore) -> tuple[str, str]:
        """(kind, name) of the pixel file `store` keeps: "raw" or "npy"."""
        return ("raw", self.raw) if store.composes else ("npy", self.npy)


def shard_names(partition_id: int) -> ShardPaths:
    """The shard's file names inside OUT."""
    base = f"{SHARDS_DIR}/part-{partition_id:05d}"
    return ShardPaths(f"{base}.npy", f"{base}.parquet", f"{base}.done.json", f"{base}.raw")


def shard_paths(out: str, partition_id: int) -> ShardPaths:
    """Where the shard's files are: paths in a folder, URLs on a bucket."""
    store, names = open_output(out), shard_names(partition_id)
    return ShardPaths(*(store.where(n) for n in (names.npy, names.parquet, names.done, names.raw)))


def write_shard(
    out: str, partition_id: int, fingerprint: str, images: np.ndarray, index: pa.Table
) -> dict:
    """Commit a shard: data files first (each whole or not at all), the done-marker last.

    In a folder, three fsyncs, not six: the folder is synced once after both data renames,
    and the marker is not synced at all. It is written only once the data is on disk, so a
    crash can lose or tear the marker (the shard is then recomputed) but never keep one for
    missing data. On a bucket the marker also names the data objects' generations and is
    written only if nobody wrote it since this run looked (ifGenerationMatch).
    """
    store, names = open_output(out), shard_names(partition_id)
    images = np.ascontiguousarray(images, dtype=np.uint8)
    kind, name = names.data(store)

    def write_data() -> Stat | None:
        with store.writing(name, batched=True) as tmp, open(tmp, "wb") as f:
            if kind == "raw":
                f.write(memoryview(images).cast("B"))
            else:
                np.save(f, images, allow_pickle=False)
        return store.stat(name)

    def write_index() -> Stat | None:
        with store.writing(names.parquet) as tmp:
            pq.write_table(index.select(list(INDEX_COLUMNS)), tmp)
        return store.stat(names.parquet)

    if store.remote:  # three chains of round trips at once; the done-record waits for all
        with ThreadPoolExecutor(2) as pool:
            steps = [pool.submit(write_data), pool.submit(write_index)]
            before = store.stat(names.done)
            data, parquet = (step.result() for step in steps)
    else:  # in turn: the index's folder fsync must follow the data's rename
        before, data, parquet = store.stat(names.done), write_data(), write_index()
    if data is None or parquet is None:
        raise WriteError(f"{store.where(name)}: gone right after it was written")
    record = {
        "partition": partition_id,
        "fingerprint": fingerprint,
        "rows": int(images.shape[0]),
        "shape": list(images.shape),
        f"{kind}_bytes": data.size,
        "parquet_bytes": parquet.size,
        "data_sha256": hashlib.sha256(images).hexdigest(),
        "counts": dict(Counter(index.column("status").to_pylist())),
    }
    if kind == "raw":  # the store checked the upload against it: what compose is checked by
        record["raw_crc32c"] = data.crc32c
    if store.pins_versions:
        record["versions"] = {kind: data.version, "parquet": parquet.version}
    expect = before.version if before is not None else "0"
    store.write_bytes(names.done, json_bytes(record), durable=False, if_version=expect)
    return record


def done_record(out: str | OutputStore, partition_id: int, fingerprint: str) -> dict | None:
    """The done-marker if the shard is complete for this fingerprint, else None.

    Cheap (sizes and versions, not hashes): a deleted, truncated, replaced or stale shard is
    not done.
    """
    store = open_output(out) if isinstance(out, str) else out
    names = shard_names(partition_id)
    record = store.read_json(names.done)
    if not record or record.get("fingerprint") != fingerprint:
        return None
    versions = record.get("versions") or {}
    for kind, name in (names.data(store), ("parquet", names.parquet)):
        stat = store.stat(name)
        if stat is None or stat.size != record.get(f"{kind}_bytes"):
            return None
        if kind in versions and stat.version != versions[kind]:
            return None
    return record


def invalidate(out: str, partition_id: int) -> None:
    """Forget a shard (its marker first), so the next run recomputes it."""
    store, names = open_output(out), shard_names(partition_id)
    for name in (names.done, names.data(store)[1], names.parquet):
        store.delete(name)


def failed_rows(out: str, partition_ids: list[int], limit: int = 500) -> list[dict]:
    """Rows whose status is not ok, from committed shards, in row order (at most `limit`)."""
    store = open_output(out)
    rows: list[dict] = []
    for pid in sorted(partition_ids):
        name = shard_names(pid).parquet
        if store.stat(name) is None:
            continue
        table = store.read_parquet(name, columns=["row", "image_path", "status", "error"])
        rows.extend(table.filter(pc.not_equal(table.column("status"), "ok")).to_pylist())
        if len(rows) >= limit:
            return rows[:limit]
    return rows


def split_done(out: str, parts: list[PartitionPlan]) -> tuple[list[PartitionPlan], list[dict]]:
    """(partitions still to compute, done-markers of those already committed): asked once."""
    store = open_output(out)
    todo, done = [], []
    for p in parts:
        record = done_record(store, p.id, p.fingerprint)
        if record is None:
            todo.append(p)
        else:
            done.append(record)
    return todo, done
