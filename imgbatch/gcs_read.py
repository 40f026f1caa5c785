"""The GET path for object bytes: one authorized urllib3 pool per process, as large as the
largest I/O pool (imgbatch.parallel.IO_MAX), so every I/O thread keeps its connection alive.

Blob.download_as_bytes builds a Blob, a resumable-media Download and a requests call per
object; this path sends the same media GET (`.../o/NAME?alt=media`) through google-auth's
AuthorizedHttp over one urllib3 pool, which costs about a third of the CPU per GET
(benchmarks/gcs_read.py), and that CPU is what caps a process's GET rate. The caller checks
the crc32c: the stored bytes come back as stored (`Accept-Encoding: gzip`, no transcoding),
with the object's crc32c in `x-goog-hash`.
"""

from __future__ import annotations

import gzip
import os
import threading
import urllib.parse
from dataclasses import dataclass

import urllib3
from google.auth import exceptions as auth_exc
from google.auth.transport.urllib3 import AuthorizedHttp

from imgbatch.errors import PermanentError, TransientError, UsageError
from imgbatch.gcs import GCS_ENDPOINT, gs_url
from imgbatch.parallel import IO_MAX

READ_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"

_lock = threading.Lock()
_pools: dict[tuple[int, str], AuthorizedHttp] = {}


@dataclass(frozen=True)
class Fetched:
    """An object's stored bytes and the crc32c GCS reported for them (None if it did not)."""

    data: bytes
    crc32c: str | None
    gzipped: bool

    def content(self) -> bytes:
        """The object's content, gunzipped when it was stored gzip-encoded."""
        return gzip.decompress(self.data) if self.gzipped else self.data


def _credentials(base: str):
    if base != GCS_ENDPOINT:  # the emulator
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()
    import google.auth

    try:
        return google.auth.default(scopes=[READ_SCOPE])[0]
    except auth_exc.DefaultCredentialsError as exc:
        raise UsageError(
            "no Google credentials: run `gcloud auth application-default login` or set "
            f"GOOGLE_APPLICATION_CREDENTIALS ({exc})"
        ) from None


def _http(url: str) -> AuthorizedHttp:
    key = (os.getpid(), url)
    with _lock:
        if key not in _pools:
            pool = urllib3.PoolManager(num_pools=4, maxsize=IO_MAX)
            _pools[key] = AuthorizedHttp(_credentials(url), http=pool)
        return _pools[key]


def media_url(base: str, bucket: str, name: str) -> str:
    """The JSON API media download URL of one object."""
    quoted = urllib.parse.quote(name, safe="")
    return f"{base}/download/storage/v1/b/{bucket}/o/{quoted}?alt=media"


def get_object(base: str, bucket: str, name: str, timeout: float) -> Fetched:
    """One GET from endpoint `base` of the object's stored bytes.

    Raises FileNotFoundError (no such object), TransientError (may pass) or PermanentError.
    """
    what = f"reading {gs_url(bucket, name)}"
    try:
        r = _http(base).request(
            "GET",
            media_url(base, bucket, name),
            headers={"Accept-Encoding": "gzip"},
            timeout=timeout,
            retries=False,
            decode_content=False,
        )
    except (urllib3.exceptions.HTTPError, OSError, auth_exc.TransportError) as exc:
        raise TransientError(f"{what}: {type(exc).__name__}: {str(exc)[:300]}") from exc
    if r.status == 404:
        raise FileNotFoundError(f"not found: {gs_url(bucket, name)}")
    if r.status in (408, 429) or r.status >= 500:
        raise TransientError(f"{what}: HTTP {r.status}")
    if r.status != 200:
        raise PermanentError(f"{what}: {r.status} {r.data[:200].decode(errors='replace')}")
    return Fetched(r.data, stored_crc32c(r.headers), _gzipped(r.headers))


def stored_crc32c(headers) -> str | None:
    """The crc32c in `x-goog-hash: crc32c=...,md5=...` (one header or several)."""
    for value in headers.getlist("x-goog-hash"):
        for part in value.split(","):
            key, _, digest = part.strip().partition("=")
            if key == "crc32c":
                return digest
    return None


def _gzipped(headers) -> bool:
    return headers.get("content-encoding", "").lower() == "gzip"
