"""A loopback HTTP file server with Range support and fault switches, for download tests.

Real wget talks to it over 127.0.0.1, so the tests exercise wget's own resume and retry logic.
Each served path has a `Resource` (bytes in memory or a file on disk) and a `Faults` record the
test flips; every request is logged so a test can count what was actually sent.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHUNK_BYTES = 1 << 20
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass
class Faults:
    """Switches for one path. Counters count down as faults are used."""

    cut_at: list[int] = field(default_factory=list)  # absolute offsets; each cuts one response
    ignore_range: bool = False  # always answer 200 with the whole body
    status: int | None = None  # always answer this error status (404, 403, ...)
    fail_status: int = 503  # answered `fail_times` times, then the body
    fail_times: int = 0
    stall_after: int | None = None  # send this many body bytes, then go silent
    stall_seconds: float = 30.0
    content_after_first: bytes | None = None  # the remote changes after the first GET
    chunk_delay: float = 0.0  # sleep between chunks: makes downloads overlap in time
    chunk_size: int = CHUNK_BYTES
    content_type: str = "application/octet-stream"  # e.g. text/html for an error page
    send_length: bool = True  # False: no Content-Length, the body ends when the socket closes


@dataclass
class Resource:
    data: bytes | None = None
    path: Path | None = None
    faults: Faults = field(default_factory=Faults)

    def size(self) -> int:
        return len(self.data) if self.data is not None else self.path.stat().st_size

    def chunks(self, start: int, end: int, chunk: int) -> Iterator[tuple[int, bytes]]:
        """(offset, bytes) pieces of [start, end)."""
        if self.data is not None:
            for off in range(start, end, chunk):
                yield off, self.data[off : min(off + chunk, end)]
            return
        with self.path.open("rb") as f:
            f.seek(start)
            off = start
            while off < end:
                piece = f.read(min(chunk, end - off))
                yield off, piece
                off += len(piece)


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    status: int
    at: float = field(default_factory=time.monotonic)


class FaultyServer(ThreadingHTTPServer):
    """Counts what it served: every request, the bytes of body sent, the peak of parallel GETs."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.resources: dict[str, Resource] = {}
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = self.bytes_sent = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def add(
        self, path: str, data: bytes | None = None, file: Path | None = None, **faults
    ) -> Resource:
        res = Resource(data=data, path=file, faults=Faults(**faults))
        self.resources["/" + path.lstrip("/")] = res
        return res

    def gets(self, path: str) -> list[Request]:
        p = "/" + path.lstrip("/")
        return [r for r in self.requests if r.path == p]


class _Handler(BaseHTTPRequestHandler):
    server: FaultyServer

    def log_message(self, format, *args) -> None:  # noqa: A002 - keep test output quiet
        pass

    def send_response(self, code: int, message: str | None = None) -> None:
        # Every connection ends after one response; saying so keeps wget from reusing it
        # (a reused, already closed socket would cost wget one of its tries).
        super().send_response(code, message)
        self.send_header("Connection", "close")

    def do_GET(self) -> None:
        srv = self.server
        with srv.lock:
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            self._serve()
        finally:
            with srv.lock:
                srv.in_flight -= 1

    def _record(self, status: int) -> None:
        with self.server.lock:
            self.server.requests.append(
                Request(self.command, self.path, self.headers.get("Range"), status)
            )

    def _error(self, status: int) -> None:
        self._record(status)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _serve(self) -> None:
        res = self.server.resources.get(self.path)
        if res is None:
            return self._error(404)
        f = res.faults
        if f.status is not None:
            return self._error(f.status)
        if f.fail_times > 0:
            f.fail_times -= 1
            return self._error(f.fail_status)
        size = res.size()
        start, end, status = 0, size, 200
        m = _RANGE.match(self.headers.get("Range") or "")
        if m and not f.ignore_range:
            start = int(m.group(1))
            if start >= size:
                self._record(416)
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            end = min(size, int(m.group(2)) + 1) if m.group(2) else size
            status = 206
        self._record(status)
        self.send_response(status)
        self.send_header("Content-Type", f.content_type)
        self.send_header("Accept-Ranges", "none" if f.ignore_range else "bytes")
        if f.send_length:
            self.send_header("Content-Length", str(end - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        try:
            self._send_body(res, start, end)
        finally:
            if f.content_after_first is not None:
                res.data, res.path, f.content_after_first = f.content_after_first, None, None
        return None

    def _send_body(self, res: Resource, start: int, end: int) -> None:
        """Send [start, end), stopping early at the next cut (drop) or stall (silence, drop)."""
        f = res.faults
        cut = min((c for c in f.cut_at if start < c < end), default=None)
        stall = None if f.stall_after is None else start + f.stall_after
        stop = min(x for x in (cut, stall, end) if x is not None)
        for i, (_, piece) in enumerate(res.chunks(start, stop, f.chunk_size)):
            if f.chunk_delay and i:  # between chunks only: after the last one the client
                time.sleep(f.chunk_delay)  # is done, and a sleep would look like overlap
            self.wfile.write(piece)
            with self.server.lock:
                self.server.bytes_sent += len(piece)
        if stop == end:
            return
        self.wfile.flush()
        if stop == cut:
            f.cut_at.remove(cut)
        else:
            time.sleep(f.stall_seconds)
        self._cut()

    def _cut(self) -> None:
        """Drop the connection without finishing the body (what a flaky network does)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def serve() -> Iterator[FaultyServer]:
    """Run a FaultyServer on 127.0.0.1 (free port) for the duration of the block."""
    srv = FaultyServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)
