"""Atomic file writes: a reader sees the old file or the whole new one, never a half."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a unique temp name beside `path`; on success fsync it and rename over `path`.

    Unique names let two runs write the same output at once without mixing bytes.
    """
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(os.path.dirname(os.path.abspath(path)))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_TEMP = re.compile(r"\.tmp-(\d+)-[0-9a-f]{8}$")


def remove_stale_temps(folder: str) -> list[str]:
    """Delete temp files left by writers that were killed (their pid no longer runs)."""
    removed = []
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return removed
    for name in names:
        m = _TEMP.search(name)
        if m and not _pid_alive(int(m.group(1))):
            os.unlink(os.path.join(folder, name))
            removed.append(name)
    return removed


def _pid_alive(pid: int) -> bool:
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
