"""Google Cloud Storage toolkit: URL parsing, the client, error mapping, retries, listing.

Used by the gs:// Storage (imgbatch.storage.gcs) and the uploader (imgbatch.acquire.upload); it
knows nothing of either. Talks to `STORAGE_EMULATOR_HOST` when it is set (anonymous, any
project), otherwise to GCS with Application Default Credentials. Two layers of retry: the
client's own (429/5xx and dropped connections inside one call), then tenacity backoff around
whole operations, so a call that still fails ends as TransientError (retry later) or
PermanentError (do not). A first contact with an endpoint (no answer from it yet in this
process) that is refused, or that times out FIRST_CONTACT_TRIES times, is a wrong address
or a hung endpoint, not a blip: it fails with one PermanentError naming the endpoint, within
the bound imgbatch.timeouts explains, and later calls to it in this process fail at once.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

import google_crc32c
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
from imgbatch.storage.relpath import InvalidPath, clean_relative
from imgbatch.storage.urls import GCS_SCHEME, is_gcs_url
from imgbatch.timeouts import CONNECT_TIMEOUT, FIRST_CONTACT_TRIES, READ_TIMEOUT

if TYPE_CHECKING:
    from google.cloud.storage import Bucket, Client

T = TypeVar("T")

GCS_ENDPOINT = "https://storage.googleapis.com"
EMULATOR_PROJECT = "test-project"
CRC_BLOCK_BYTES = 1 << 20
# Bucket naming rules, simplified: lowercase letters, digits, '-', '_', '.'; 3-222 chars.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
_LIST_FIELDS = "items(name,size,crc32c,generation),nextPageToken"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up on one object.

    `client_deadline` bounds the client's own retry inside one call; `attempts` counts the
    tenacity attempts around it, waiting `initial_wait` doubling up to `max_wait`. `timeout`
    is the read timeout of one request; the connect timeout is imgbatch.timeouts'.
    """

    attempts: int = 5
    initial_wait: float = 1.0
    max_wait: float = 30.0
    client_deadline: float = 60.0
    timeout: float = READ_TIMEOUT

    def timeouts(self) -> tuple[float, float]:
        """(connect, read) seconds, as the storage client's `timeout=` takes them."""
        return (CONNECT_TIMEOUT, self.timeout)

    def client_retry(self) -> api_retry.Retry:
        """The client's per-call retry, with this policy's deadline and delays.

        A refused connection and a timeout are left to the caller (call_endpoint decides
        whether the endpoint is wrong or hung, with_backoff retries them otherwise), so a
        wrong address or a silent endpoint does not spin for the whole client deadline.
        """
        from google.cloud.storage.retry import DEFAULT_RETRY

        should_retry = DEFAULT_RETRY._predicate  # the client's own list of retryable errors
        return api_retry.Retry(
            predicate=lambda exc: should_retry(exc) and not refused(exc) and not timed_out(exc),
            initial=self.initial_wait,
            maximum=self.max_wait,
            timeout=self.client_deadline,
        )


def parse_gs_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of gs://bucket[/prefix]; the prefix has no leading/trailing '/'."""
    if not is_gcs_url(url):
        raise UsageError(f"{url!r} is not a gs://BUCKET[/PREFIX] URL")
    bucket, _, prefix = url[len(GCS_SCHEME) :].partition("/")
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


def gs_url(bucket: str, name: str = "") -> str:
    """gs://bucket/name, for messages and roots."""
    return f"{GCS_SCHEME}{bucket}/{name}".rstrip("/")


def endpoint() -> str:
    """The storage endpoint requests go to: the emulator when STORAGE_EMULATOR_HOST is set."""
    return os.environ.get("STORAGE_EMULATOR_HOST", "").rstrip("/") or GCS_ENDPOINT


def crc32c_b64(data: bytes) -> str:
    """Base64 crc32c of data, the form GCS reports in listings and x-goog-hash."""
    return _b64(google_crc32c.Checksum(data))


def file_crc32c(path: str | os.PathLike) -> str:
    """crc32c_b64 of a file's bytes, read in blocks (memory does not grow with the file)."""
    checksum = google_crc32c.Checksum()
    with open(path, "rb") as f:
        while block := f.read(CRC_BLOCK_BYTES):
            checksum.update(block)
    return _b64(checksum)


def _b64(checksum: google_crc32c.Checksum) -> str:
    return base64.b64encode(checksum.digest()).decode("ascii")


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """exc and what it wraps, along the chain requests, urllib3 (its `.reason`) and api_core
    keep."""
    seen: set[int] = set()
    while isinstance(exc, BaseException) and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__ or getattr(exc, "reason", None)


def refused(exc: BaseException | None) -> bool:
    """True when exc (or what it wraps) is a refused TCP connection."""
    return any(isinstance(e, ConnectionRefusedError) for e in _chain(exc))


def timed_out(exc: BaseException | None) -> bool:
    """True when exc (or what it wraps) is a connect or read timeout: no answer in time."""
    return any(isinstance(e, TimeoutError | requests.Timeout) for e in _chain(exc))


_heard: dict[str, float] = {}  # endpoint -> when it last answered in this process (monotonic)
_silent: dict[str, PermanentError] = {}  # endpoints given up on in this process


def answered(url: str) -> None:
    """Note that the endpoint `url` answered (any HTTP status): it is no wrong address."""
    _heard[url] = time.monotonic()


def _hint() -> str:
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return "is STORAGE_EMULATOR_HOST right?"
    return "check the network and proxy settings"


def unreachable(exc: BaseException, url: str, tries: int, wait: float) -> PermanentError | None:
    """The one-line error for a first contact with `url` that failed (refused, or no answer
    within `wait` seconds on every one of `tries`), else None."""
    if url in _heard:
        return None
    if refused(exc):
        return PermanentError(
            f"cannot reach the storage endpoint {url} (connection refused): {_hint()}"
        )
    if timed_out(exc):
        return PermanentError(
            f"the storage endpoint {url} did not answer within {wait:g} s "
            f"(tried {tries} times): {_hint()}"
        )
    return None


def stopped_answering(exc: BaseException, url: str, limit: float) -> PermanentError | None:
    """The one-line error for an endpoint that answered before and has now been silent for
    `limit` seconds (a timeout, and nothing else it was asked answered meanwhile), else None."""
    heard = _heard.get(url)
    if heard is None or not timed_out(exc):
        return None
    silent = time.monotonic() - heard
    if silent < limit:
        return None
    return PermanentError(
        f"the storage endpoint {url} stopped answering (nothing for {silent:.0f} s); "
        "rerun once it answers, finished work is kept"
    )


def call_endpoint(fn: Callable[[], T], what: str, policy: RetryPolicy, url: str) -> T:
    """with_backoff for a call to the endpoint `url`, bounded however the endpoint fails.

    Until `url` has answered in this process, a timeout is tried FIRST_CONTACT_TRIES times
    at most and a refusal once. After that, a timeout once the endpoint has been silent for
    as long as a first contact is given (FIRST_CONTACT_TRIES read timeouts; no call from any
    thread answered meanwhile) ends the retries: a hung endpoint mid-run, not a slow one.
    Either ends as one PermanentError naming the endpoint, and every later call to it fails
    with that error at once (no thread waits again).
    """
    if url in _silent:
        raise _silent[url]
    first = url not in _heard
    tries = min(policy.attempts, FIRST_CONTACT_TRIES) if first else policy.attempts
    silence = FIRST_CONTACT_TRIES * policy.timeout

    def once() -> T:
        if url in _silent:  # given up on by another thread while this one waited
            raise _silent[url]
        try:
            result = fn()
        except TransientError as exc:
            wrong = unreachable(exc, url, tries, policy.timeout) if refused(exc) else None
            if first and wrong is not None:  # a wrong address: no retry
                raise _give_up(url, wrong) from None
            hung = None if first else stopped_answering(exc, url, silence)
            if hung is not None:
                raise _give_up(url, hung) from None
            raise
        answered(url)
        return result

    try:
        return with_backoff(once, what, replace(policy, attempts=tries))
    except TransientError as exc:
        error = unreachable(exc, url, tries, policy.timeout) if first else None
        if error is None:
            raise
        raise _give_up(url, error) from None


def _give_up(url: str, error: PermanentError) -> PermanentError:
    """Remember that `url` is given up on in this process; the error to raise."""
    _silent[url] = error
    return error


def list_prefix(bucket: Bucket, prefix: str, policy: RetryPolicy) -> dict[str, dict]:
    """One listing of every object under `prefix/`: name -> {size, crc32c, generation}."""
    url = endpoint()

    def once() -> dict[str, dict]:
        try:
            blobs = bucket.client.list_blobs(
                bucket,
                prefix=f"{prefix}/" if prefix else None,
                fields=_LIST_FIELDS,
                page_size=1000,
                retry=policy.client_retry(),
                timeout=policy.timeouts(),
            )
            listing = {
                b.name: {"size": b.size, "crc32c": b.crc32c, "generation": b.generation}
                for b in blobs
            }
        except api_exc.NotFound:
            answered(url)
            raise PermanentError(f"bucket {gs_url(bucket.name)} does not exist") from None
        except Exception as exc:
            if isinstance(exc, api_exc.GoogleAPICallError):
                answered(url)
            raise translate(exc, f"listing {where}") from exc
        answered(url)
        return listing

    where = gs_url(bucket.name, prefix)
    return call_endpoint(once, f"listing {where}", policy, url)


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


_clients: dict[tuple[int, str], Client] = {}
_clients_lock = threading.Lock()


def shared_client() -> Client:
    """This process's client for the current endpoint, made once (a fork gets its own)."""
    key = (os.getpid(), endpoint())
    with _clients_lock:
        if key not in _clients:
            _clients[key] = make_client()
        return _clients[key]


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


@functools.lru_cache(maxsize=16)
def _retrying(policy: RetryPolicy) -> Retrying:
    """One Retrying per policy, shared by threads (tenacity keeps a call's state per thread):
    building one per call cost a tenth of the CPU of a GET."""
    return Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_exponential(multiplier=policy.initial_wait, max=policy.max_wait)
        + wait_random(0, policy.initial_wait),
        retry=retry_if_exception_type(TransientError),
        reraise=True,
    )


def with_backoff(fn: Callable[[], T], what: str, policy: RetryPolicy) -> T:
    """Call fn, retrying TransientError with exponential backoff; then give up loudly."""
    try:
        return _retrying(policy)(fn)
    except TransientError as exc:
        raise TransientError(f"{what}: gave up after {policy.attempts} attempts: {exc}") from exc
