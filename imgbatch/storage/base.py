"""Where source images live. One small interface so a local folder and gs:// look the same.

A `Storage` answers two questions for a list of row paths: what is the identity of each
source (for the partition fingerprint: changes when the bytes may have changed), and what
are its bytes. A missing source raises FileNotFoundError; a path that is not allowed
raises InvalidPath; a retryable failure raises TransientError. `remote` says whether a read
is a network round trip, which sizes the I/O pool (imgbatch.compute.parallel.io_threads).

Implementations are found by URL scheme in one table, `SCHEMES` (as webdataset's
gopen_schemes): the module is imported only when a root of its scheme is opened, so a local
run never loads the Google client.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from typing import Protocol

from imgbatch.errors import UsageError
from imgbatch.storage.local import LocalStorage
from imgbatch.storage.relpath import InvalidPath, clean_relative
from imgbatch.storage.urls import GCS_SCHEME

__all__ = ["SCHEMES", "InvalidPath", "LocalStorage", "Storage", "clean_relative", "open_storage"]

# URL scheme -> "module:class"; the class has open(root). "" is a local folder.
SCHEMES: dict[str, str] = {
    GCS_SCHEME: "imgbatch.storage.gcs:GCSStorage",
    "": "imgbatch.storage.local:LocalStorage",
}
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


class Storage(Protocol):
    root: str
    remote: bool

    def identities(self, paths: Sequence[str]) -> list[str | None]:
        """One identity string per path (None when the source is missing)."""
        ...

    def read(self, path: str) -> bytes:
        """The source's bytes."""
        ...


def scheme_of(root: str) -> str:
    """The SCHEMES key for `root`, or UsageError for a scheme no storage handles."""
    if not isinstance(root, str) or not root:
        raise UsageError(f"images root must be a folder or a URL, got {root!r}")
    m = _SCHEME.match(root)
    if m is None:
        return ""
    if m.group(0) not in SCHEMES:
        known = ", ".join(s for s in SCHEMES if s)
        raise UsageError(f"images root {root!r}: unsupported scheme; use a folder or {known}")
    return m.group(0)


def open_storage(root: str) -> Storage:
    """Storage for an images root given as a local folder or gs://bucket/prefix."""
    module, _, name = SCHEMES[scheme_of(root)].partition(":")
    return getattr(importlib.import_module(module), name).open(root)
