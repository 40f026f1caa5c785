"""The one spelling of the storage URL scheme (docs/ARCHITECTURE.md, "Storage")."""

from __future__ import annotations

GCS_SCHEME = "gs://"


def is_gcs_url(root: str) -> bool:
    """True for gs://bucket[/prefix]."""
    return isinstance(root, str) and root.startswith(GCS_SCHEME)
