"""One writer per OUT, whatever holds it: flock on a folder, a leased lock object on a bucket
(imgbatch.outstore). A second run is told who holds OUT instead of doubling the work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from imgbatch.outstore.base import open_output
from imgbatch.outstore.holder import OutputBusy

__all__ = ["OutputBusy", "output_lock", "read_holder"]


@contextmanager
def output_lock(out: str, label: str, wait: float = 0) -> Iterator[dict]:
    """Hold OUT's writer lock for the block; yield what was recorded about this holder.

    Waits up to `wait` seconds for a current holder to finish, then raises OutputBusy with
    one line naming it. `label` says what this run is, e.g. "flow run fancy-cat (<id>)".
    """
    with open_output(out).lock(label, wait) as holder:
        yield holder


def read_holder(out: str) -> dict | None:
    """What the current (or last) holder recorded, or None when nobody holds OUT."""
    return open_output(out).holder()
