"""One file named by a local path or a gs:// URL, as a local path to read (the CSV).

Kept apart from gcs_copy.py so that a local path never imports the storage client (the CLI's
checks run before anything heavy is imported)."""

from __future__ import annotations

from imgbatch.storage.urls import is_gcs_url


def local_file(name: str, what: str = "file") -> str:
    """`name` itself when it is a local path; for gs://BUCKET/OBJECT a checked local copy of
    the object's current generation (UsageError naming `what` when it does not exist)."""
    if not is_gcs_url(name):
        return name
    from imgbatch.storage.gcs_copy import fetch_copy

    return fetch_copy(name, what)
