"""Images under gs://bucket/prefix: identity = generation + crc32c from one listing.

Bytes come from imgbatch.storage.gcs_read (one light GET each) and are checked against the crc32c
of the listing when this copy holds it, else against the crc32c GCS sends with the bytes
(the same stored value); a mismatch is a corrupted transfer and is retried with backoff.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from imgbatch.errors import PermanentError, TransientError
from imgbatch.storage.gcs_client import (
    RetryPolicy,
    call_endpoint,
    crc32c_b64,
    endpoint,
    gs_url,
    list_prefix,
    object_name,
    parse_gs_url,
    shared_client,
)
from imgbatch.storage.gcs_read import get_object
from imgbatch.storage.relpath import InvalidPath


class GCSStorage:
    """Images under gs://bucket/prefix; see the module docstring.

    Picklable: the client and connections are per process (made on first use), and the
    listing (possibly large) is not shipped; a copy lists again only if asked for identities.
    """

    remote = True  # every read is a network round trip: wants many I/O threads

    def __init__(self, root: str, policy: RetryPolicy | None = None) -> None:
        self.bucket_name, self.prefix = parse_gs_url(root)
        self.root = gs_url(self.bucket_name, self.prefix)
        self.endpoint = endpoint()  # shipped with a copy: a worker may have another environment
        self.policy = policy or RetryPolicy()
        self._init_local()

    @classmethod
    def open(cls, root: str) -> GCSStorage:
        """The storage for gs://bucket/prefix (UsageError for a bad URL); no request yet."""
        return cls(root)

    def _init_local(self) -> None:
        self._lock = threading.Lock()
        self._listing: dict[str, tuple[int, str]] | None = None

    def __getstate__(self) -> dict:
        keep = ("bucket_name", "prefix", "root", "endpoint", "policy")
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_local()

    def identities(self, paths: Sequence[str]) -> list[str | None]:
        """Per path "generation-crc32c", None when missing, "invalid" for a bad path."""
        listing = self._list_once()
        out: list[str | None] = []
        for p in paths:
            try:
                listed = listing.get(object_name(self.prefix, p))
            except InvalidPath:
                out.append("invalid")
            else:
                out.append(f"{listed[0]}-{listed[1]}" if listed else None)
        return out

    def _list_once(self) -> dict[str, tuple[int, str]]:
        if self._listing is None:
            bucket = shared_client().bucket(self.bucket_name)
            objects = list_prefix(bucket, self.prefix, self.policy)
            listing = {n: (o["generation"], o["crc32c"]) for n, o in objects.items()}
            with self._lock:
                if self._listing is None:
                    self._listing = listing
        return self._listing

    def read(self, path: str) -> bytes:
        """The object's bytes, crc32c-checked; FileNotFoundError if missing."""
        name = object_name(self.prefix, path)
        uri = gs_url(self.bucket_name, name)
        listed = self._listing.get(name) if self._listing is not None else None

        def once() -> bytes:
            got = get_object(self.endpoint, self.bucket_name, name, self.policy.timeout)
            expected, source = (listed[1], "listed") if listed else (got.crc32c, "sent")
            if expected is None:
                raise PermanentError(f"{uri}: no crc32c was sent with the bytes, cannot verify")
            actual = crc32c_b64(got.data)
            if actual != expected:
                raise TransientError(
                    f"{uri}: crc32c of the bytes {actual} != {source} {expected}: corrupted"
                )
            return got.content()

        return call_endpoint(once, f"reading {uri}", self.policy, self.endpoint)
