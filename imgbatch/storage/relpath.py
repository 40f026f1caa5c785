"""Row paths: the one place that decides whether a path from the CSV may be read.

A row path is relative to the images root (a folder or gs://bucket/prefix); it must not be
empty, absolute or climb out of the root. Both storages and the GCS URL parser use this.
"""

from __future__ import annotations

from imgbatch.errors import PermanentError


class InvalidPath(PermanentError):
    """A row path that is empty, absolute or climbs out of the images root."""


def clean_relative(path: str) -> str:
    """Normalize a row path to a POSIX path inside the root, or raise InvalidPath.

    Plain string work, as PurePosixPath would normalize it (empty and "." parts dropped):
    a plan handles every row, and PurePosixPath was most of a large no-op rerun's planning
    (`python -m benchmarks.scale`, the no-op rerun rows)."""
    if not isinstance(path, str) or not path.strip():
        raise InvalidPath("empty image path")
    text = path.strip().replace("\\", "/")
    parts = [p for p in text.split("/") if p and p != "."]
    if text.startswith("/") or ".." in parts:
        raise InvalidPath(f"path {path!r} is absolute or leaves the images root")
    return "/".join(parts) or "."
