"""Prefect global concurrency limits that the project uses when (and only when) they exist.

Each stage names one limit (imgbatch-partitions, imgbatch-downloads, imgbatch-upload); the
flow looks it up once, tasks hold a slot of it while they work. No limit, no waiting.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_client
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectNotFound


def existing_limit(name: str) -> str | None:
    """`name` if a global concurrency limit of that name exists on the server, else None."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            return None
    return name


@contextmanager
def slot(limit: str | None) -> Iterator[None]:
    """Hold one slot of `limit` for the duration; a no-op when limit is None."""
    if limit is None:
        yield
        return
    with concurrency(limit, occupy=1):
        yield
