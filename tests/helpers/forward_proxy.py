"""A real forward proxy on 127.0.0.1, as a corporate network puts in front of the internet.

It forwards plain-HTTP requests sent with an absolute URI (`GET http://host:port/path`) and
tunnels CONNECT requests byte for byte (what a client does for an https endpoint). It records
every request line and its Proxy-Authorization header, so a test can tell a request that went
through it from one that went around it.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "transfer-encoding"}


class ForwardProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, str, str | None]] = []  # (method, target, proxy auth)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address) -> None:  # a client hung up: not news
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ForwardProxy

    def log_message(self, *args) -> None:
        pass

    def _note(self) -> None:
        self.server.seen.append((self.command, self.path, self.headers.get("Proxy-Authorization")))

    def do_GET(self) -> None:
        self._note()
        target = urllib.parse.urlsplit(self.path)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        path = target.path + (f"?{target.query}" if target.query else "")
        upstream.request(self.command, path, body=body, headers=headers)
        r = upstream.getresponse()
        data = r.read()
        upstream.close()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def do_CONNECT(self) -> None:
        self._note()
        host, _, port = self.path.rpartition(":")
        upstream = socket.create_connection((host, int(port)), timeout=30)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        pair = [self.connection, upstream]
        with upstream:
            while True:
                ready, _, _ = select.select(pair, [], [], 30)
                if not ready:
                    break
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        self.close_connection = True
                        return
                    (upstream if sock is self.connection else self.connection).sendall(data)


@contextlib.contextmanager
def forward_proxy() -> Iterator[ForwardProxy]:
    """A forward proxy serving on 127.0.0.1 until the block ends."""
    proxy = ForwardProxy()
    thread = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(5)
