"""One writer per output folder: an exclusive flock on OUT/.imgbatch.lock for the whole run.

Two runs on the same OUT would both compute every partition (correct bytes, double the
work); the second one is told who holds the folder instead. The lock is the kernel's
(`fcntl.flock`), so when the holder dies, even by SIGKILL, the kernel releases it and the
next run simply takes it over: there is no stale lock to clean up. The file itself stays
(deleting it would let two processes lock two different inodes of the same name); it holds
the holder's pid, host, start time and label, and is emptied on release.

Scope: flock is per open file. Children made with os.fork inherit the lock and keep it
while they live; imgbatch's process pools use forkserver, which does not inherit it.

NFS: Linux emulates flock on NFS with POSIX byte-range locks, so it holds across clients
when the NFS lock service works (NFSv4, or NFSv3 with lockd); a client that dies loses its
lock only when the server's lease expires (NFSv4: about 90 s). Mounted with `nolock`, or on
FUSE filesystems such as gcsfuse, the lock is local to one machine and does not protect
OUT against a writer on another machine.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from imgbatch.atomic_files import LockBusy, described_write_errors, exclusive_lock
from imgbatch.layout import LOCK_NAME
from imgbatch.outstore.holder import OutputBusy, busy_message, new_holder


@contextmanager
def folder_lock(out: str, label: str, wait: float = 0) -> Iterator[dict]:
    """Hold OUT's writer lock for the block; yield what was recorded about this holder.

    Waits up to `wait` seconds for a current holder to finish, then raises OutputBusy with
    one line naming it. `label` says what this run is, e.g. "flow run fancy-cat (<id>)".
    """
    os.makedirs(out, exist_ok=True)
    with ExitStack() as held:
        try:
            fd = held.enter_context(exclusive_lock(os.path.join(out, LOCK_NAME), wait))
        except LockBusy:
            raise OutputBusy(busy_message(out, _holder_soon(out))) from None
        holder = new_holder(label)
        # Not fsynced: the record only names the holder to a second run (a crashed holder's
        # lock is free anyway), and an fsync can wait seconds behind other files' writeback.
        with described_write_errors(os.path.join(out, LOCK_NAME)):  # e.g. a full disk
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield holder
        finally:
            os.ftruncate(fd, 0)


def read_holder(out: str) -> dict | None:
    """What the current (or last) holder recorded, or None when the lock file is empty."""
    try:
        with open(os.path.join(out, LOCK_NAME)) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _holder_soon(out: str) -> dict | None:
    """The holder's record; a holder that has just locked writes it a moment later."""
    for _ in range(5):
        holder = read_holder(out)
        if holder:
            return holder
        time.sleep(0.05)
    return None
