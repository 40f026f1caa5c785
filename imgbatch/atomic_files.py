"""Atomic file writes: a reader sees the old file or the whole new one, never a half.

Also the file mechanics around them: fsync, digests, and the one exclusive lock (flock)
that the output folder, extraction and the CLI's server start-up each take.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from imgbatch.errors import WriteError
from imgbatch.upstream import numpy_short_write

HASH_BLOCK = 1 << 24
LOCK_POLL_SECONDS = 0.1


class LockBusy(Exception):
    """exclusive_lock gave up: another open file held the lock for the whole wait."""


@contextmanager
def exclusive_lock(path: str | os.PathLike, wait: float | None = None) -> Iterator[int]:
    """Hold the kernel's exclusive lock (flock) on `path` for the block; yield its fd.

    Other threads and processes wait for it. `wait=None` waits as long as it takes, else
    LockBusy after `wait` seconds. The kernel drops the lock when its holder dies, even by
    SIGKILL, so there is never a stale lock; the file itself stays (deleting it would let
    two processes lock two inodes of one name). Per open file: a fork inherits it.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _flock(fd, path, wait)
        try:
            yield fd
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _flock(fd: int, path: str | os.PathLike, wait: float | None) -> None:
    if wait is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LockBusy(f"{path} is locked by another process") from None
            time.sleep(LOCK_POLL_SECONDS)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def file_digest(path: str | os.PathLike) -> tuple[str, int]:
    """(sha256 hex, size in bytes) of a file, read in blocks (memory does not grow with it)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def staged_name(path: str) -> str:
    """A unique name beside `path` for a file that a publish (outstore.journal) renames later.

    Not matched by the `.tmp-` pattern, so a new run's clean-up of killed writers' temps
    never deletes a staged file that an interrupted publish's journal still names.
    """
    return f"{path}.staged-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextmanager
def atomic_path(path: str, sync_file: bool = True, sync_dir: bool = True) -> Iterator[str]:
    """Yield a unique temp name beside `path`; on success fsync it and rename over `path`.

    Unique names let two runs write the same output at once without mixing bytes. Skip
    `sync_dir` when a later write in the same folder syncs it; skip both for a file whose
    loss in a crash only costs a recomputation (a shard's done-marker).
    """
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with described_write_errors(path):
            yield tmp
            if sync_file:
                fsync_file(tmp)
            os.replace(tmp, path)
            if sync_dir:
                fsync_dir(os.path.dirname(os.path.abspath(path)))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_CAUSES = {
    errno.ENOSPC: "no space left on device (the disk is full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.EISDIR: "a folder is in the way",
    errno.EFBIG: "file too large for this file system",
}


@contextmanager
def described_write_errors(path: str) -> Iterator[None]:
    """A failed write becomes a WriteError that says the cause in words and the path."""
    try:
        yield
    except OSError as exc:
        cause = write_failure(exc, path)
        if cause is None:
            raise
        raise WriteError(f"cannot write {path}: {cause}") from exc


def write_failure(exc: OSError, path: str) -> str | None:
    """The cause of a failed write in words, or None when it is not a write failure.

    numpy's array writer reports a full disk as "N requested and M written" with no errno;
    a short write with (nearly) no free space left is taken for a full disk.
    """
    if exc.errno in _CAUSES:
        return _CAUSES[exc.errno]
    if numpy_short_write(exc):
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
        if free < 1 << 20:
            return _CAUSES[errno.ENOSPC]
        return f"short write ({exc})"
    return None


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


def write_json(path: str, doc: dict, durable: bool = True) -> None:
    with atomic_path(path, sync_file=durable, sync_dir=durable) as tmp, open(tmp, "w") as f:
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


def read_parquet(path: str, columns: list[str] | None = None):
    """A Parquet file as a pyarrow Table. Through ParquetFile, not pq.read_table: that
    imports pyarrow.dataset, a visible share of every command's start-up (`python -X
    importtime`; `python -m benchmarks.e2e`, the 1-row run)."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as f:
        return f.read(columns=columns)
