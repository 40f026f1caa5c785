"""Images under a local folder: identity = size and mtime, bytes = one file read."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from imgbatch.errors import UsageError
from imgbatch.storage.relpath import InvalidPath, clean_relative


class LocalStorage:
    """Images under a local folder; identity = size and mtime (ns)."""

    remote = False  # a read is a local file read, not a network round trip

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = str(Path(root).resolve())

    @classmethod
    def open(cls, root: str) -> LocalStorage:
        """The storage for `root`, or UsageError when it is not a readable folder."""
        if not os.path.isdir(root):
            raise UsageError(f"images root {root!r} is not a readable folder")
        if not os.access(root, os.R_OK | os.X_OK):
            raise UsageError(f"images root {root!r} is not readable")
        return cls(root)

    def _full(self, path: str) -> str:
        return os.path.join(self.root, clean_relative(path))

    def identities(self, paths: Sequence[str]) -> list[str | None]:
        """Per path "size-mtime_ns", None when missing, "invalid" for a bad path."""
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
        """The file's bytes."""
        with open(self._full(path), "rb") as f:
            return f.read()
