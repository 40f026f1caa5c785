"""Plan a run: read the CSV once, take every source's identity, fingerprint each partition.

The plan is written to OUT/plan.parquet (one row group per partition, so a partition reads
only its own rows), and rewritten only when its content changed; tasks receive the plan's
small partition records, never row lists. Which partitions are done is asked here once per
run, from the shards' done-markers (docs/ARCHITECTURE.md, "Reruns").
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from functools import cache, lru_cache
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from imgbatch import __version__
from imgbatch.errors import UsageError
from imgbatch.layout import PLAN_FILE
from imgbatch.outstore.base import OutputStore, locate, open_output
from imgbatch.pixels.images import pixel_libraries
from imgbatch.pixels.spec import ImageSpec
from imgbatch.plan.rows import partitions, read_paths
from imgbatch.storage.base import Storage

_DIGEST_KEY = b"imgbatch-digest"
_LIBRARIES_KEY = b"imgbatch-pixel-libraries"  # what decided the pixels of the last plan
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartitionPlan:
    id: int
    start: int
    stop: int
    fingerprint: str


@dataclass(frozen=True)
class Plan:
    n_rows: int
    plan_file: str
    partitions: list[PartitionPlan]
    found: int  # rows whose source exists
    first_missing: str | None  # the first row path whose source does not exist
    note: str = ""  # one line for the user, e.g. why finished shards are recomputed

    def to_dict(self) -> dict:
        return asdict(self)

    def select(self, ids: list[int] | None) -> list[PartitionPlan]:
        """The chosen partitions (all when ids is None); unknown ids are a usage error."""
        if ids is None:
            return list(self.partitions)
        bad = [i for i in ids if not 0 <= i < len(self.partitions)]
        if bad:
            last = len(self.partitions) - 1
            raise UsageError(f"partition ids {bad} out of range: this CSV has partitions 0-{last}")
        return [self.partitions[i] for i in sorted(set(ids))]


# Every module in this folder decides pixels (a test checks images.py uses no module outside it).
PIXELS_DIR = Path(__file__).parents[1] / "pixels"


@cache
def _pixel_code() -> bytes:
    """The source of the modules that decide pixels (read once per process)."""
    return b"".join(
        p.name.encode() + b"\0" + p.read_bytes() for p in sorted(PIXELS_DIR.glob("*.py"))
    )


def code_version(libraries: dict | None = None) -> str:
    """Package version plus a hash of the pixel modules, the libraries that decide pixels
    and the fast-decode switch: new code, a library upgrade or a flipped switch, new shards.
    Not cached: the switch is an environment variable, read when a plan is made (a plan
    passes the `pixel_libraries()` it read once)."""
    h = hashlib.sha256(_pixel_code())
    h.update(json.dumps(libraries or pixel_libraries(), sort_keys=True).encode())
    return f"{__version__}+{h.hexdigest()[:12]}"


def libraries_note(before: dict | None, now: dict) -> str:
    """One line saying which pixel libraries changed since the last plan ("" if none)."""
    if not before or before == now:
        return ""
    changes = ", ".join(
        f"{k} {before.get(k)} -> {now.get(k)}"
        for k in sorted(set(before) | set(now))
        if before.get(k) != now.get(k)
    )
    return f"imgbatch: recomputing the shards made before: what decides pixels changed ({changes})"


def fingerprint(
    code: str,
    spec: ImageSpec,
    root: str,
    start: int,
    paths: list[str],
    identities: list[str | None],
) -> str:
    """Hash of code version, parameters and each row's source identity."""
    doc = {
        "code": code,
        "spec": spec.to_dict(),
        "root": root,
        "start": start,
        "rows": [[p, i] for p, i in zip(paths, identities, strict=True)],
    }
    return hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).hexdigest()


def make_plan(
    csv_path: str, column: str, storage: Storage, spec: ImageSpec, partition_size: int, out: str
) -> Plan:
    """Read the CSV, stat/list the sources once, write the plan file, fingerprint partitions."""
    paths = read_paths(csv_path, column)
    identities = storage.identities(paths)
    store = open_output(out)
    store.prepare()
    libraries = pixel_libraries()
    last = _last_metadata(store)
    note = libraries_note(_last_libraries(last), libraries)
    if note:
        log.warning(note)
    _write_rows(store, last, paths, identities, partition_size, libraries)
    code = code_version(libraries)
    plans = [
        PartitionPlan(
            p.id,
            p.start,
            p.stop,
            fingerprint(
                code,
                spec,
                storage.root,
                p.start,
                paths[p.start : p.stop],
                identities[p.start : p.stop],
            ),
        )
        for p in partitions(len(paths), partition_size)
    ]
    missing = (p for p, i in zip(paths, identities, strict=True) if i in (None, "invalid"))
    found = sum(i not in (None, "invalid") for i in identities)
    plan_file = store.where(PLAN_FILE)
    return Plan(len(paths), plan_file, plans, found, next(missing, None), note)


def _last_metadata(store: OutputStore) -> dict:
    """The key-value metadata of the plan file in OUT ({} when there is none readable)."""
    try:
        with store.open_read(PLAN_FILE) as f:
            return pq.read_schema(f).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return {}


def _last_libraries(metadata: dict) -> dict | None:
    """The pixel libraries the last plan file recorded, if any."""
    try:
        return json.loads(metadata[_LIBRARIES_KEY])
    except (KeyError, TypeError, ValueError):
        return None


def _write_rows(
    store: OutputStore,
    last: dict,
    paths: list[str],
    identities: list,
    partition_size: int,
    libraries: dict,
) -> None:
    """Write the plan file unless the one there (its metadata `last`) holds the same rows and
    records the same pixel libraries: a no-op rerun writes none."""
    doc = [partition_size, paths, identities, libraries]
    digest = hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).hexdigest()
    if last.get(_DIGEST_KEY) == digest.encode():
        return
    table = pa.table(
        {
            "row": pa.array(range(len(paths)), pa.int64()),
            "image_path": pa.array(paths, pa.string()),
            "identity": pa.array(identities, pa.string()),
        }
    ).replace_schema_metadata(
        {_DIGEST_KEY: digest, _LIBRARIES_KEY: json.dumps(libraries, sort_keys=True)}
    )
    with store.writing(PLAN_FILE) as tmp:
        pq.write_table(table, tmp, row_group_size=partition_size)


def read_rows(plan_file: str, partition_id: int) -> list[str]:
    """The image paths of one partition (its own row group only); `plan_file` is a path or
    a gs:// URL."""
    store, name = locate(plan_file)
    stat = store.stat(name)
    if stat is None:
        raise FileNotFoundError(f"{plan_file} does not exist")
    footer = _footer(plan_file, stat.version, stat.size)
    with (
        store.open_read(name, stat.version, stat.size) as raw,
        pq.ParquetFile(raw, metadata=footer) as f,
    ):
        return f.read_row_group(partition_id, columns=["image_path"])["image_path"].to_pylist()


@lru_cache(maxsize=4)
def _footer(plan_file: str, version: str | None, size: int) -> pq.FileMetaData:
    """The plan's footer, parsed once per process and version of the file (a rewrite is a
    new version): it lists every row group, so parsing it per partition grows with the
    partition count (`python -m benchmarks.scale`, "each extra partition")."""
    store, name = locate(plan_file)
    with store.open_read(name, version) as f:
        return pq.read_metadata(f)
