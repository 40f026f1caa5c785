"""A local copy of one gs:// object (the CSV), fetched once per generation.

The CSV is read several times per run (the header check, the row check, its sha256 for the
dataset identity, the plan), by pyarrow and the csv module, which want a file. So the object
is copied once into TMPDIR/imgbatch-copies/, named by a hash of its URL and its generation,
and checked by crc32c; each later use costs one metadata GET and reuses the copy while the
generation is the same (hashed again only by another process). A replaced object (new
generation) is fetched again and the copies of its older generations are removed
(docs/decisions/csv-on-gcs.md).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from pathlib import Path

from google.api_core import exceptions as api_exc

from imgbatch.errors import TransientError, UsageError
from imgbatch.storage.gcs_client import (
    RetryPolicy,
    call_endpoint,
    endpoint,
    file_crc32c,
    gs_url,
    parse_gs_url,
    shared_client,
    translate,
)

COPIES = "imgbatch-copies"
_verified: set[Path] = set()  # copies this process checked (or made): not hashed again


def copies_folder() -> Path:
    """Where copies live: this machine's temporary folder (TMPDIR), never OUT."""
    return Path(tempfile.gettempdir()) / COPIES


def fetch_copy(url: str, what: str = "file", policy: RetryPolicy | None = None) -> str:
    """The path of a local copy of the object at `url`, current generation, crc32c-checked.

    A missing object or bucket is a UsageError naming `what` and the URL (one line, exit 2);
    transient failures are retried with backoff, then TransientError."""
    bucket_name, name = parse_gs_url(url)
    if not name:
        raise UsageError(f"{what} {url!r} names a bucket, not an object")
    policy = policy or RetryPolicy()
    bucket = shared_client().bucket(bucket_name)
    kw = {"retry": policy.client_retry(), "timeout": policy.timeouts()}
    key = hashlib.sha256(f"{endpoint()} {url}".encode()).hexdigest()[:16]
    folder = copies_folder()

    def once() -> str:
        try:
            blob = bucket.get_blob(name, **kw)
            if blob is None:
                if bucket.exists(**kw):
                    raise UsageError(f"{what} {url!r} does not exist")
                raise UsageError(f"{what} {url!r}: bucket {gs_url(bucket_name)} does not exist")
            path = folder / f"{key}-{blob.generation}{Path(name).suffix}"
            if path in _verified and path.is_file():
                return str(path)
            if path.is_file() and file_crc32c(path) == blob.crc32c:
                _verified.add(path)
                return str(path)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            try:  # that generation only (the metadata's media link may name another host)
                pinned = bucket.blob(name, generation=blob.generation)
                pinned.download_to_filename(str(tmp), checksum=None, **kw)
                got = file_crc32c(tmp)
                if got != blob.crc32c:  # checked here: replaced mid-read, or corrupted
                    raise TransientError(f"{url}: crc32c {got} != stored {blob.crc32c}")
                os.replace(tmp, path)
                _verified.add(path)
            except api_exc.NotFound:  # replaced since the metadata was read: read it again
                raise TransientError(f"{url}: generation {blob.generation} replaced") from None
            finally:
                tmp.unlink(missing_ok=True)
        except Exception as exc:
            raise translate(exc, f"reading {url}") from exc
        for old in folder.glob(f"{key}-*"):  # earlier generations of the same object
            if old != path:
                old.unlink(missing_ok=True)
        return str(path)

    return call_endpoint(once, f"reading {url}", policy, endpoint())
