"""Where source images live. One small interface so a local folder and gs:// look the same.

A `Storage` answers two questions for a list of row paths: what is the identity of each
source (for the partition fingerprint: changes when the bytes may have changed), and what
are its bytes. A missing source raises FileNotFoundError; a path that is not allowed
raises InvalidPath; a retryable failure raises TransientError.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Protocol

from imgbatch.errors import PermanentError, UsageError


class InvalidPath(PermanentError):
    """A row path that is empty, absolute or climbs out of the images root."""


class Storage(Protocol):
    root: str

    def identities(self, paths: Sequence[str]) -> list[str | None]:
        """One identity string per path (None when the source is missing)."""
        ...

    def read(self, path: str) -> bytes:
        """The source's bytes."""
        ...


def clean_relative(path: str) -> str:
    """Normalize a row path to a POSIX path inside the root, or raise InvalidPath."""
    if not isinstance(path, str) or not path.strip():
        raise InvalidPath("empty image path")
    p = PurePosixPath(path.strip().replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts:
        raise InvalidPath(f"path {path!r} is absolute or leaves the images root")
    return str(p)


class LocalStorage:
    """Images under a local folder; identity = size and mtime (ns)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = str(Path(root).resolve())

    def _full(self, path: str) -> str:
        return os.path.join(self.root, clean_relative(path))

    def identities(self, paths: Sequence[str]) -> list[str | None]:
        out: list[str | None] = []
        for p in paths:
            try:
                st = os.stat(self._full(p))
            except InvalidPath:
                out.append("invalid")
            except OSError:
                out.append(None)
            else:
                out.append(f"{st.st_size}-{st.st_mtime_ns}")
        return out

    def read(self, path: str) -> bytes:
        with open(self._full(path), "rb") as f:
            return f.read()


def open_storage(root: str) -> Storage:
    """Storage for an images root given as a local folder or gs://bucket/prefix."""
    if root.startswith("gs://"):
        from imgbatch.gcs import GCSStorage  # lazy: local runs need no Google client

        return GCSStorage(root)
    if not os.path.isdir(root):
        raise UsageError(f"images root {root!r} is not a readable folder")
    if not os.access(root, os.R_OK | os.X_OK):
        raise UsageError(f"images root {root!r} is not readable")
    return LocalStorage(root)
