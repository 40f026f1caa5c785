"""A file of OUT on gs:// built from other objects on the bucket (GCS compose), checked by
crc32c, so that images.npy never passes through this machine
(docs/decisions/compose-images.md).

GCS composes at most 32 sources a call, so more are composed as a tree: groups of 32 into
temporary objects under shards/.compose/, those again, and the last call into the final
name. Sources are pinned to the generations their records name (ifGenerationMatch per
source: real GCS refuses a replaced part with 412); the result's crc32c, which GCS computes
itself, must equal the combination of the parts' recorded crc32c (crc32c.combine_all), or
the result is deleted and the parts that changed are named. Temporary objects are deleted
when the composition ends, and those a killed run left behind, before it starts.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Protocol

from imgbatch.errors import ImgbatchError
from imgbatch.layout import SHARDS_DIR
from imgbatch.outstore.base import Part, PartsChanged, Stat
from imgbatch.outstore.crc32c import combine_all
from imgbatch.storage.gcs_client import crc32c_b64

FAN_IN = 32  # GCS's limit of sources per compose call
TEMP_DIR = f"{SHARDS_DIR}/.compose"  # under shards/: a folder OUT's ownership check knows
THREADS = 8  # compose calls of one tree level in flight (each is a round trip, no bytes)


class Refused(Exception):
    """The store refused compose itself (not a part): stream the parts instead."""


class SourceChanged(Exception):
    """A source's generation is not the one named (412; real GCS only: the emulator ignores
    the per-source precondition)."""


class Composer(Protocol):
    """What composing needs of a store (gcs.GCSStore)."""

    def where(self, name: str) -> str: ...
    def stat(self, name: str) -> Stat | None: ...
    def delete(self, name: str) -> None: ...
    def upload_bytes(self, name: str, data: bytes, if_version: str | None = None) -> Stat: ...
    def compose_objects(self, dest: str, sources: list[Part]) -> Part: ...
    def list_under(self, folder: str) -> list[str]: ...


def compose(store: Composer, final: str, head: bytes, parts: list[Part]) -> Stat:
    """Make `final` = head + parts on the bucket and check its crc32c; Refused when the
    store does not compose, PartsChanged when a part is not what was recorded."""
    expected = combine_all([(crc32c_b64(head), len(head))] + [(p.crc32c, p.size) for p in parts])
    _clear(store)
    made: list[str] = []
    try:
        stat = store.upload_bytes(f"{TEMP_DIR}/head", head)
        made.append(f"{TEMP_DIR}/head")
        sources = [Part(f"{TEMP_DIR}/head", stat.version, len(head), stat.crc32c or ""), *parts]
        level = 0
        while len(sources) > FAN_IN:
            groups = [sources[i : i + FAN_IN] for i in range(0, len(sources), FAN_IN)]
            names = [f"{TEMP_DIR}/{level}-{i:05d}" for i in range(len(groups))]
            made.extend(names)
            with ThreadPoolExecutor(min(THREADS, len(groups))) as pool:
                sources = list(pool.map(store.compose_objects, names, groups))
            level += 1
        result = store.compose_objects(final, sources)
    except SourceChanged:
        raise _changed(store, final, parts, "a part was replaced (412 on compose)") from None
    finally:
        _delete(store, made)
    if result.crc32c != expected:
        says = f"composed crc32c {result.crc32c}, the parts' records combine to {expected}"
        raise _changed(store, final, parts, says)
    return Stat(result.size, result.version or "", result.crc32c)


def _changed(store: Composer, final: str, parts: list[Part], says: str) -> PartsChanged:
    """The result is removed, and the parts whose object differs from its record named."""
    store.delete(final)
    changed = []
    for p in parts:
        now = store.stat(p.name)
        if now is None or (now.version, now.size, now.crc32c) != (p.version, p.size, p.crc32c):
            changed.append(p.name)
    which = ", ".join(changed[:5]) or "none found"
    return PartsChanged(f"{store.where(final)} not published: {says}; changed: {which}", changed)


def _clear(store: Composer) -> None:
    """Delete what a killed composition left under shards/.compose/ (one listing)."""
    _delete(store, store.list_under(TEMP_DIR))


def _delete(store: Composer, names: list[str]) -> None:
    """Delete temporary objects, in parallel; one that cannot be is left for the next run."""
    if not names:
        return

    def drop(name: str) -> None:
        with suppress(ImgbatchError):
            store.delete(name)

    with ThreadPoolExecutor(min(THREADS, len(names))) as pool:
        list(pool.map(drop, names))
