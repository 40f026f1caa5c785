"""A real hung endpoint on 127.0.0.1: it accepts every connection and never answers.

This is what a hung proxy or a stuck server looks like to a client: the TCP handshake
succeeds (the kernel completes it from the listen backlog, and a thread accepts), and then
nothing is ever sent. Connections are held open until the endpoint is closed, so a client
sees neither a reset nor an end of stream: only its own read timeout can end the wait.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class HungEndpoint:
    """The listening socket, and every connection it accepted (held open, never answered)."""

    sock: socket.socket
    port: int
    held: list[socket.socket] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed: the endpoint is done
                return
            self.held.append(conn)


@contextlib.contextmanager
def hung_endpoint() -> Iterator[HungEndpoint]:
    """A port on 127.0.0.1 that accepts connections and never answers, until the block ends."""
    sock = socket.create_server(("127.0.0.1", 0), backlog=64)
    endpoint = HungEndpoint(sock, sock.getsockname()[1])
    thread = threading.Thread(target=endpoint._accept, daemon=True, name="hung-endpoint")
    thread.start()
    try:
        yield endpoint
    finally:
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        thread.join(5)
        for conn in endpoint.held:
            conn.close()


def refused_port() -> int:
    """A port on 127.0.0.1 where nobody listens (connecting to it is refused)."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]
