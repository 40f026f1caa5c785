"""One partition's committed output: part-NNNNN.npy + .parquet + .done.json.

A shard is done only when all three exist and the done-marker (written last, atomically)
holds the expected fingerprint and the byte sizes of the other two. The marker also keeps
the sha256 of the image data so assembly can refuse a damaged shard.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from imgbatch.atomic_files import atomic_path, read_json, read_parquet, write_json
from imgbatch.layout import SHARDS_DIR
from imgbatch.plan.run_plan import PartitionPlan

INDEX_COLUMNS = ("row", "image_path", "status", "error", "width", "height", "partition")


@dataclass(frozen=True)
class ShardPaths:
    npy: str
    parquet: str
    done: str


def shard_paths(out: str, partition_id: int) -> ShardPaths:
    base = os.path.join(out, SHARDS_DIR, f"part-{partition_id:05d}")
    return ShardPaths(f"{base}.npy", f"{base}.parquet", f"{base}.done.json")


def write_shard(
    out: str, partition_id: int, fingerprint: str, images: np.ndarray, index: pa.Table
) -> dict:
    """Commit a shard: data files first (temp + fsync + rename), the done-marker last.

    Three fsyncs, not six: the folder is synced once after both data renames, and the marker
    is not synced at all. It is written only once the data is on disk, so a crash can lose
    or tear the marker (the shard is then recomputed) but never keep one for missing data.
    """
    paths = shard_paths(out, partition_id)
    os.makedirs(os.path.dirname(paths.npy), exist_ok=True)
    images = np.ascontiguousarray(images, dtype=np.uint8)
    with atomic_path(paths.npy, sync_dir=False) as tmp, open(tmp, "wb") as f:
        np.save(f, images, allow_pickle=False)
    with atomic_path(paths.parquet) as tmp:
        pq.write_table(index.select(list(INDEX_COLUMNS)), tmp)
    record = {
        "partition": partition_id,
        "fingerprint": fingerprint,
        "rows": int(images.shape[0]),
        "shape": list(images.shape),
        "npy_bytes": os.path.getsize(paths.npy),
        "parquet_bytes": os.path.getsize(paths.parquet),
        "data_sha256": hashlib.sha256(images).hexdigest(),
        "counts": dict(Counter(index.column("status").to_pylist())),
    }
    write_json(paths.done, record, durable=False)
    return record


def done_record(out: str, partition_id: int, fingerprint: str) -> dict | None:
    """The done-marker if the shard is complete for this fingerprint, else None.

    Cheap (sizes, not hashes): a deleted, truncated or stale shard is not done.
    """
    paths = shard_paths(out, partition_id)
    record = read_json(paths.done)
    if not record or record.get("fingerprint") != fingerprint:
        return None
    try:
        if (
            os.path.getsize(paths.npy) != record["npy_bytes"]
            or os.path.getsize(paths.parquet) != record["parquet_bytes"]
        ):
            return None
    except (OSError, KeyError):
        return None
    return record


def invalidate(out: str, partition_id: int) -> None:
    """Forget a shard (its marker first), so the next run recomputes it."""
    p = shard_paths(out, partition_id)
    for path in (p.done, p.npy, p.parquet):
        if os.path.exists(path):
            os.unlink(path)


def failed_rows(out: str, partition_ids: list[int], limit: int = 500) -> list[dict]:
    """Rows whose status is not ok, from committed shards, in row order (at most `limit`)."""
    rows: list[dict] = []
    for pid in sorted(partition_ids):
        path = shard_paths(out, pid).parquet
        if not os.path.exists(path):
            continue
        table = read_parquet(path, columns=["row", "image_path", "status", "error"])
        rows.extend(table.filter(pc.not_equal(table.column("status"), "ok")).to_pylist())
        if len(rows) >= limit:
            return rows[:limit]
    return rows


def split_done(out: str, parts: list[PartitionPlan]) -> tuple[list[PartitionPlan], list[dict]]:
    """(partitions still to compute, done-markers of those already committed): asked once."""
    todo, done = [], []
    for p in parts:
        record = done_record(out, p.id, p.fingerprint)
        if record is None:
            todo.append(p)
        else:
            done.append(record)
    return todo, done
