"""Google Cloud Storage access: URL parsing, the client, error mapping, and a gs:// Storage.

Talks to `STORAGE_EMULATOR_HOST` when it is set (anonymous, any project), otherwise to GCS
with Application Default Credentials. Two layers of retry: the client's own (429/5xx and
dropped connections inside one call), then tenacity backoff around whole operations, so a
call that still fails ends as TransientError (retry later) or PermanentError (do not).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import requests
from google.api_core import exceptions as api_exc
from google.api_core import retry as api_retry
from google.auth import exceptions as auth_exc
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from imgbatch.errors import ImgbatchError, PermanentError, TransientError, UsageError
from imgbatch.storage import InvalidPath, clean_relative

if TYPE_CHECKING:
    from google.cloud.storage import Bucket, Client

T = TypeVar("T")

SCHEME = "gs://"
EMULATOR_PROJECT = "test-project"
# Bucket naming rules, simplified: lowercase letters, digits, '-', '_', '.'; 3-222 chars.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
_LIST_FIELDS = "items(name,size,crc32c,generation),nextPageToken"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up on one object.

    `client_deadline` bounds the client's own retry inside one call; `attempts` counts the
    tenacity attempts around it, waiting `initial_wait` doubling up to `max_wait`.
    """

    attempts: int = 5
    initial_wait: float = 1.0
    max_wait: float = 30.0
    client_deadline: float = 60.0
    timeout: float = 60.0

    def client_retry(self) -> api_retry.Retry:
        """The client's per-call retry, with this policy's deadline and delays."""
        from google.cloud.storage.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_delay(
            initial=self.initial_wait, maximum=self.max_wait
        ).with_timeout(self.client_deadline)


def parse_gs_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of gs://bucket[/prefix]; the prefix has no leading/trailing '/'."""
    if not isinstance(url, str) or not url.startswith(SCHEME):
        raise UsageError(f"{url!r} is not a gs://BUCKET[/PREFIX] URL")
    bucket, _, prefix = url[len(SCHEME) :].partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise UsageError(f"{url!r}: {bucket!r} is not a valid bucket name")
    prefix = prefix.strip("/")
    if prefix:
        try:
            prefix = clean_relative(prefix)
        except InvalidPath:
            raise UsageError(f"{url!r}: the prefix must not contain '..'") from None
    return bucket, prefix


def object_name(prefix: str, relative: str) -> str:
    """The object name for a path relative to the prefix."""
    rel = clean_relative(relative)
    return f"{prefix}/{rel}" if prefix else rel


def list_prefix(bucket: Bucket, prefix: str, policy: RetryPolicy) -> dict[str, dict]:
    """One listing of every object under `prefix/`: name -> {size, crc32c, generation}."""

    def once() -> dict[str, dict]:
        try:
            blobs = bucket.client.list_blobs(
                bucket,
                prefix=f"{prefix}/" if prefix else None,
                fields=_LIST_FIELDS,
                page_size=1000,
                retry=policy.client_retry(),
                timeout=policy.timeout,
            )
            return {
                b.name: {"size": b.size, "crc32c": b.crc32c, "generation": b.generation}
                for b in blobs
            }
        except api_exc.NotFound:
            raise PermanentError(f"bucket gs://{bucket.name} does not exist") from None
        except Exception as exc:
            raise translate(exc, f"listing gs://{bucket.name}/{prefix}") from exc

    return with_backoff(once, f"listing gs://{bucket.name}/{prefix}", policy)


def make_client(pool_size: int = 16) -> Client:
    """A storage client for the emulator (STORAGE_EMULATOR_HOST) or for GCS (ADC).

    The HTTP connection pool is sized for `pool_size` threads sharing the client.
    """
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        project = os.environ.get("GOOGLE_CLOUD_PROJECT", EMULATOR_PROJECT)
        client = storage.Client(project=project, credentials=AnonymousCredentials())
    else:
        try:
            client = storage.Client()
        except auth_exc.DefaultCredentialsError as exc:
            raise UsageError(
                "no Google credentials: run `gcloud auth application-default login` or set "
                f"GOOGLE_APPLICATION_CREDENTIALS ({exc})"
            ) from None
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max(pool_size, 10))
    client._http.mount("https://", adapter)  # _http is the client's requests session
    client._http.mount("http://", adapter)
    return client


def is_transient(exc: BaseException) -> bool:
    """True for failures that may pass: 408/429/5xx, dropped connections, corrupted transfers."""
    if isinstance(exc, TransientError | DataCorruption | api_exc.RetryError):
        return True
    if isinstance(exc, api_exc.GoogleAPICallError | InvalidResponse):
        code = exc.code if isinstance(exc, api_exc.GoogleAPICallError) else exc.response.status_code
        return code in (408, 429) or (code or 0) >= 500
    return isinstance(
        exc, requests.RequestException | ConnectionError | TimeoutError | auth_exc.TransportError
    )


def translate(exc: BaseException, what: str) -> BaseException:
    """The imgbatch error for a client exception (others are returned unchanged)."""
    if isinstance(exc, ImgbatchError):
        return exc
    if is_transient(exc):
        return TransientError(f"{what}: {type(exc).__name__}: {_short(exc)}")
    if isinstance(exc, api_exc.GoogleAPICallError):
        return PermanentError(f"{what}: {exc.code} {_short(exc)}")
    return exc


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else repr(exc)


def with_backoff(fn: Callable[[], T], what: str, policy: RetryPolicy) -> T:
    """Call fn, retrying TransientError with exponential backoff; then give up loudly."""
    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_exponential(multiplier=policy.initial_wait, max=policy.max_wait)
        + wait_random(0, policy.initial_wait),
        retry=retry_if_exception_type(TransientError),
        reraise=True,
    )
    try:
        return retrying(fn)
    except TransientError as exc:
        raise TransientError(f"{what}: gave up after {policy.attempts} attempts: {exc}") from exc


class GCSStorage:
    """Images under gs://bucket/prefix; identity = generation + crc32c from one listing.

    Picklable: the client is created lazily in each process, and the listing (possibly
    large) is not shipped; a copy lists again only if asked for identities.
    """

    def __init__(self, root: str, policy: RetryPolicy | None = None, pool_size: int = 16) -> None:
        self.bucket_name, self.prefix = parse_gs_url(root)
        self.root = f"{SCHEME}{self.bucket_name}/{self.prefix}".rstrip("/")
        self.policy = policy or RetryPolicy()
        self.pool_size = pool_size
        self._init_local()

    def _init_local(self) -> None:
        self._lock = threading.Lock()
        self._client: Client | None = None
        self._client_pid = 0
        self._listing: dict[str, str] | None = None

    def __getstate__(self) -> dict:
        keep = ("bucket_name", "prefix", "root", "policy", "pool_size")
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_local()

    def _bucket(self) -> Bucket:
        with self._lock:
            if self._client is None or self._client_pid != os.getpid():
                self._client = make_client(self.pool_size)
                self._client_pid = os.getpid()
            return self._client.bucket(self.bucket_name)

    def _uri(self, name: str) -> str:
        return f"{SCHEME}{self.bucket_name}/{name}"

    def identities(self, paths: Sequence[str]) -> list[str | None]:
        """Per path "generation-crc32c", None when missing, "invalid" for a bad path."""
        listing = self._list_once()
        out: list[str | None] = []
        for p in paths:
            try:
                out.append(listing.get(object_name(self.prefix, p)))
            except InvalidPath:
                out.append("invalid")
        return out

    def _list_once(self) -> dict[str, str]:
        if self._listing is None:
            objects = list_prefix(self._bucket(), self.prefix, self.policy)
            listing = {n: f"{o['generation']}-{o['crc32c']}" for n, o in objects.items()}
            with self._lock:
                if self._listing is None:
                    self._listing = listing
        return self._listing

    def read(self, path: str) -> bytes:
        """The object's bytes (crc32c-checked by the client); FileNotFoundError if missing."""
        name = object_name(self.prefix, path)
        uri = self._uri(name)

        def once() -> bytes:
            try:
                return (
                    self._bucket()
                    .blob(name)
                    .download_as_bytes(
                        checksum="crc32c",
                        retry=self.policy.client_retry(),
                        timeout=self.policy.timeout,
                    )
                )
            except api_exc.NotFound:
                raise FileNotFoundError(f"not found: {uri}") from None
            except Exception as exc:
                raise translate(exc, f"reading {uri}") from exc

        return with_backoff(once, f"reading {uri}", self.policy)
