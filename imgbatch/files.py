"""Atomic file writes: a reader sees the old file or the whole new one, never a half."""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

HASH_BLOCK = 1 << 24


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def file_digest(path: str) -> tuple[str, int]:
    """(sha256 hex, size in bytes) of a file, read in blocks (memory does not grow with it)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def staged_name(path: str) -> str:
    """A unique name beside `path` for a file that a publish (imgbatch.publish) renames later.

    Not matched by the `.tmp-` pattern, so a new run's clean-up of killed writers' temps
    never deletes a staged file that an interrupted publish's journal still names.
    """
    return f"{path}.staged-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a unique temp name beside `path`; on success fsync it and rename over `path`.

    Unique names let two runs write the same output at once without mixing bytes.
    """
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(os.path.dirname(os.path.abspath(path)))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


TEMP = re.compile(r"\.tmp-(\d+)-[0-9a-f]{8}$")
STAGED = re.compile(r"\.staged-(\d+)-[0-9a-f]{8}$")


def remove_stale_temps(folder: str, pattern: re.Pattern = TEMP) -> list[str]:
    """Delete temp files left by writers that were killed (their pid no longer runs)."""
    removed = []
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return removed
    for name in names:
        m = pattern.search(name)
        if m and not pid_alive(int(m.group(1))):
            os.unlink(os.path.join(folder, name))
            removed.append(name)
    return removed


def pid_alive(pid: int) -> bool:
    """True when a process with this pid runs (on this host)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_json(path: str, doc: dict) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")


def read_json(path: str) -> dict | None:
    """The document, or None when it is missing or unreadable (treated as not done)."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
