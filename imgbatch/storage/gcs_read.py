"""The GET path for object bytes: one kept-alive http.client connection per I/O thread.

Reading images from gs:// is one media GET per object (`.../o/NAME?alt=media`), and on a
busy machine the CPU each GET costs is taken from decoding. Blob.download_as_bytes builds a
Blob, a resumable-media Download and a requests call per object; google-auth's
AuthorizedHttp over a urllib3 pool costs less; the standard library's http.client on a
connection each thread keeps costs less again (docs/decisions/gcs-get-on-http-client.md;
`python -m benchmarks.gcs_read`, "CPU per GET"). Authorization is google-auth's own
(`Credentials.before_request`, which refreshes an expiring token). The caller checks the
crc32c: the stored bytes come back as stored (`Accept-Encoding: gzip`, no transcoding), with
the object's crc32c in `x-goog-hash`.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import http.client
import os
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

from google.auth import exceptions as auth_exc

from imgbatch.errors import PermanentError, TransientError, UsageError
from imgbatch.storage.gcs_client import GCS_ENDPOINT, answered, gs_url
from imgbatch.timeouts import CONNECT_TIMEOUT

READ_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
# A kept-alive connection the server has since closed fails like this on its next request,
# before any response: the GET is sent again at once on a new connection.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)

_lock = threading.Lock()
_auth: dict[tuple[int, str], _Auth] = {}


class _Connections(dict):
    """One I/O thread's kept-alive connections, keyed (pid, base, timeout); closed when the
    thread ends, so a finished pool leaves no socket for the garbage collector to find."""

    def __del__(self) -> None:
        for conn in self.values():
            conn.close()


class _Local(threading.local):
    def __init__(self) -> None:
        self.conns = _Connections()


_local = _Local()


@dataclass(frozen=True)
class StoredObject:
    """An object's stored bytes and the crc32c GCS reported for them (None if it did not)."""

    data: bytes
    crc32c: str | None
    gzipped: bool

    def content(self) -> bytes:
        """The object's content, gunzipped when it was stored gzip-encoded."""
        return gzip.decompress(self.data) if self.gzipped else self.data


class _Auth:
    """An endpoint's credentials and the transport google-auth refreshes them over."""

    def __init__(self, base: str) -> None:
        from google.auth.transport.urllib3 import Request

        self.credentials = _credentials(base)
        self.request = Request(_refresh_http())

    def headers(self, url: str) -> dict[str, str]:
        """The GET's headers, with a token google-auth refreshes when it is about to expire."""
        headers = {"Accept-Encoding": "gzip"}
        with _auth_errors():
            self.credentials.before_request(self.request, "GET", url, headers)
        return headers

    def refresh(self) -> bool:
        """Refresh after a 401; False when these credentials have no token to refresh."""
        if not getattr(self.credentials, "token", None):
            return False
        with _auth_errors():
            self.credentials.refresh(self.request)
        return True


@contextlib.contextmanager
def _auth_errors() -> Iterator[None]:
    try:
        yield
    except auth_exc.RefreshError as exc:
        raise PermanentError(f"Google credentials could not be refreshed: {exc}") from None
    except auth_exc.TransportError as exc:
        raise TransientError(f"refreshing Google credentials: {exc}") from exc


def _refresh_http():
    import urllib3

    return urllib3.PoolManager()


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


def _auth_for(base: str) -> _Auth:
    key = (os.getpid(), base)
    with _lock:
        if key not in _auth:
            _auth[key] = _Auth(base)
        return _auth[key]


class _ReadTimeout:
    """Connect (and TLS handshake) within CONNECT_TIMEOUT, then `read_timeout` per read:
    http.client has one timeout for both. Through an http proxy, `absolute` is the endpoint
    every request path is prefixed with, and `proxy_headers` go with every request."""

    read_timeout: float
    absolute: str = ""
    proxy_headers: dict[str, str] | None = None

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]  # with self.timeout = CONNECT_TIMEOUT
        self.sock.settimeout(self.read_timeout)  # type: ignore[attr-defined]


class _HTTP(_ReadTimeout, http.client.HTTPConnection):
    pass


class _HTTPS(_ReadTimeout, http.client.HTTPSConnection):
    pass


def _connect(base: str, timeout: float) -> http.client.HTTPConnection:
    """A connection to `base`, through the proxy the environment names for it, as the storage
    client's requests would choose it (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY): an
    https endpoint through a CONNECT tunnel, an http one with absolute request URIs."""
    url = urllib.parse.urlsplit(base if "://" in base else f"http://{base}")
    proxy = _proxy_for(url.geturl())
    host, port = (proxy.hostname, proxy.port or 80) if proxy else (url.hostname, url.port)
    if url.scheme == "https":
        conn: _HTTP | _HTTPS = _HTTPS(host, port, timeout=CONNECT_TIMEOUT, context=_tls())
        if proxy:
            conn.set_tunnel(url.hostname, url.port, headers=_proxy_auth(proxy))
    else:
        conn = _HTTP(host, port, timeout=CONNECT_TIMEOUT)
        if proxy:
            conn.absolute, conn.proxy_headers = url.geturl().rstrip("/"), _proxy_auth(proxy)
    conn.read_timeout = timeout
    return conn


def _proxy_for(url: str) -> urllib.parse.SplitResult | None:
    """The proxy requests would use for `url` under this environment, or None."""
    from requests.utils import get_environ_proxies, select_proxy

    proxy = select_proxy(url, get_environ_proxies(url))
    return urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}") if proxy else None


def _proxy_auth(proxy: urllib.parse.SplitResult) -> dict[str, str]:
    """Basic Proxy-Authorization for a proxy URL that carries a user name."""
    if proxy.username is None:
        return {}
    user = urllib.parse.unquote(proxy.username) + ":" + urllib.parse.unquote(proxy.password or "")
    return {"Proxy-Authorization": "Basic " + base64.b64encode(user.encode()).decode()}


def _tls() -> ssl.SSLContext:
    """Certificates checked against the bundle requests would use (REQUESTS_CA_BUNDLE,
    CURL_CA_BUNDLE, else certifi's), so a private CA trusted by the client is trusted here."""
    from requests.utils import DEFAULT_CA_BUNDLE_PATH

    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    bundle = bundle or DEFAULT_CA_BUNDLE_PATH
    if os.path.isdir(bundle):
        return ssl.create_default_context(capath=bundle)
    return ssl.create_default_context(cafile=bundle)


def _connection(base: str, timeout: float, fresh: bool) -> http.client.HTTPConnection:
    """This thread's connection to `base` (a new one when `fresh`); per process after a fork."""
    conns = _local.conns
    key = (os.getpid(), base, timeout)
    if fresh or key not in conns:
        old = conns.pop(key, None)
        if old is not None:
            old.close()
        conns[key] = _connect(base, timeout)
    return conns[key]


def _drop(base: str, timeout: float) -> None:
    conn = _local.conns.pop((os.getpid(), base, timeout), None)
    if conn is not None:
        conn.close()


def media_path(bucket: str, name: str) -> str:
    """The JSON API media download path of one object (after the endpoint)."""
    quoted = urllib.parse.quote(name, safe="")
    return f"/download/storage/v1/b/{bucket}/o/{quoted}?alt=media"


def _exchange(base: str, path: str, headers: dict[str, str], timeout: float):
    """Status, headers and body of one GET, sent again once if the kept connection was stale."""
    reused = (os.getpid(), base, timeout) in _local.conns
    conn = _connection(base, timeout, fresh=False)
    try:
        r = _get(conn, path, headers)
    except _STALE:
        if not reused:
            raise
        r = _get(_connection(base, timeout, fresh=True), path, headers)
    return r.status, r.headers, r.read()


def _get(conn, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    conn.request("GET", conn.absolute + path, headers={**headers, **(conn.proxy_headers or {})})
    return conn.getresponse()


def get_object(base: str, bucket: str, name: str, timeout: float) -> StoredObject:
    """One GET from endpoint `base` of the object's stored bytes; `timeout` is the read
    timeout (the connect timeout is imgbatch.timeouts.CONNECT_TIMEOUT).

    Raises FileNotFoundError (no such object), TransientError (may pass) or PermanentError.
    """
    what = f"reading {gs_url(bucket, name)}"
    auth, path = _auth_for(base), media_path(bucket, name)
    for attempt in (1, 2):  # a rejected token is refreshed once, as AuthorizedHttp does
        try:
            status, headers, body = _exchange(base, path, auth.headers(base + path), timeout)
        except (http.client.HTTPException, OSError) as exc:
            _drop(base, timeout)
            raise TransientError(f"{what}: {type(exc).__name__}: {str(exc)[:300]}") from exc
        answered(base)
        if status != 401 or attempt == 2 or not auth.refresh():
            break
    if status == 404:
        raise FileNotFoundError(f"not found: {gs_url(bucket, name)}")
    if status in (408, 429) or status >= 500:
        raise TransientError(f"{what}: HTTP {status}")
    if status != 200:
        raise PermanentError(f"{what}: {status} {body[:200].decode(errors='replace')}")
    return StoredObject(
        body, stored_crc32c(headers.get_all("x-goog-hash") or []), _gzipped(headers)
    )


def stored_crc32c(values: list[str]) -> str | None:
    """The crc32c in `x-goog-hash: crc32c=...,md5=...` (one header or several)."""
    for value in values:
        for part in value.split(","):
            key, _, digest = part.strip().partition("=")
            if key == "crc32c":
                return digest
    return None


def _gzipped(headers) -> bool:
    return headers.get("content-encoding", "").lower() == "gzip"
