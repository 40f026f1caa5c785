"""Assemble committed shards, in partition order, into the outputs of DESIGN.md.

images.npy is written by streaming each shard's bytes after a .npy header (no memory map:
a map's dirty pages count against the process, a plain write does not), hashed on the way,
then renamed into place. Peak memory is one shard, whatever N is. A missing, stale or
damaged shard makes assembly refuse (and forget that shard so a rerun recomputes it):
never an N-k array.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter

import numpy as np
import pyarrow.parquet as pq

from imgbatch import shards
from imgbatch.errors import PermanentError
from imgbatch.files import atomic_path, read_json, write_json
from imgbatch.plan import PartitionPlan, code_version
from imgbatch.preview import write_preview
from imgbatch.spec import ImageSpec

IMAGES = "images.npy"
INDEX = "index.parquet"
RUN = "run.json"
PREVIEW = "preview.png"


class ShardError(PermanentError):
    """A shard is missing, stale or damaged: rerun to recompute it."""


def missing_partitions(out: str, parts: list[PartitionPlan]) -> list[int]:
    """Ids of partitions whose shard is not done for the current fingerprint."""
    return [p.id for p in parts if shards.done_record(out, p.id, p.fingerprint) is None]


def up_to_date(out: str, parts: list[PartitionPlan]) -> dict | None:
    """run.json if the outputs already hold exactly these shards, else None."""
    run = read_json(os.path.join(out, RUN))
    if not run or run.get("shards") != [p.fingerprint for p in parts]:
        return None
    try:
        if os.path.getsize(os.path.join(out, IMAGES)) != run["images_bytes"]:
            return None
    except (OSError, KeyError):
        return None
    if not all(os.path.exists(os.path.join(out, f)) for f in (INDEX, PREVIEW)):
        return None
    return run


def assemble(
    out: str,
    parts: list[PartitionPlan],
    n_rows: int,
    spec: ImageSpec,
    params: dict,
    timings: dict | None = None,
) -> dict:
    """Write images.npy, index.parquet, preview.png and run.json; return run.json's content."""
    run = up_to_date(out, parts)
    if run is not None:
        return run
    missing = missing_partitions(out, parts)
    if missing:
        raise ShardError(f"partitions not done, cannot assemble: {_ids(missing)}")
    t0 = time.perf_counter()
    shape = (n_rows, spec.size, spec.size, 3)
    counts: Counter[str] = Counter()
    images_path = os.path.join(out, IMAGES)
    digest = hashlib.sha256()
    with atomic_path(images_path) as tmp, open(tmp, "wb") as f:
        np.lib.format.write_array_header_2_0(
            f, {"descr": "|u1", "fortran_order": False, "shape": shape}
        )
        f.flush()
        with open(tmp, "rb") as h:
            digest.update(h.read())
        for p in parts:
            data = _verified_shard(out, p, spec)
            f.write(data)
            digest.update(data)
            del data
    _write_index(out, parts, n_rows, counts)
    write_preview(os.path.join(out, PREVIEW), images_path, os.path.join(out, INDEX))
    run = {
        "code_version": code_version(),
        "params": params,
        "rows": n_rows,
        "shape": list(shape),
        "counts": dict(sorted(counts.items())),
        "partitions": len(parts),
        "shards": [p.fingerprint for p in parts],
        "images_sha256": digest.hexdigest(),
        "images_bytes": os.path.getsize(images_path),
        "timings": {**(timings or {}), "assemble_seconds": round(time.perf_counter() - t0, 3)},
    }
    write_json(os.path.join(out, RUN), run)
    return run


def _verified_shard(out: str, p: PartitionPlan, spec: ImageSpec) -> memoryview:
    """The shard's raw image bytes, checked against its done-marker."""
    record = shards.done_record(out, p.id, p.fingerprint)
    path = shards.shard_paths(out, p.id).npy
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        ok = (
            record is not None
            and arr.dtype == np.uint8
            and arr.shape == (p.stop - p.start, spec.size, spec.size, 3)
            and hashlib.sha256(arr).hexdigest() == record["data_sha256"]
        )
    except (OSError, ValueError):
        ok = False
    if not ok:
        shards.invalidate(out, p.id)
        raise ShardError(f"shard of partition {p.id} is damaged; rerun to recompute it")
    return memoryview(np.ascontiguousarray(arr)).cast("B")


def _write_index(out: str, parts: list[PartitionPlan], n_rows: int, counts: Counter) -> None:
    path = os.path.join(out, INDEX)
    written = 0
    with atomic_path(path) as tmp:
        writer = None
        try:
            for p in parts:
                table = pq.read_table(shards.shard_paths(out, p.id).parquet)
                rows = table.column("row").to_numpy()
                if len(rows) != p.stop - p.start or rows[0] != p.start or rows[-1] != p.stop - 1:
                    shards.invalidate(out, p.id)
                    raise ShardError(f"index of partition {p.id} does not cover its rows")
                counts.update(table.column("status").to_pylist())
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
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
