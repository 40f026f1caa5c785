"""Sample data for `imgbatch demo`: archives in the seed's layout, served on 127.0.0.1.

Real photos from scikit-image's wheel (plus a few broken files and one missing row) are
packed into two .tar.gz archives in the seed's layout (each archive's members carry their
category folder, the CSV names `category/file.jpg`) and served on 127.0.0.1 by a handler
that honours Range and cuts the first answer for the first archive halfway; the
prepare-dataset flow then downloads them with wget, verifies and extracts them as tar would,
and preprocesses the CSV's rows.
Rerunning the demo reuses the same archives (byte for byte) and their extraction.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from imgbatch.sampledata import samples

ARCHIVES = ("beauty_image", "fashion_image")


def make_archives(workdir: Path, rows: int) -> tuple[Path, list[Path]]:
    """Write the CSV and one .tar.gz per ARCHIVES entry; return (csv, archives).

    The CSV's paths are relative to the folder the archives extract into; its last rows are
    broken on purpose (empty, HTML, truncated JPEG, missing).
    """
    src = workdir / "source"
    half = (rows - 4) // 2
    paths = []
    for i, (name, n) in enumerate(zip(ARCHIVES, (half, rows - 4 - half), strict=True)):
        paths += [f"{name}/{p}" for p in samples.write_tree(src / name, n, seed=i)]
    good_jpg = (src / next(p for p in paths if p.endswith(".jpg"))).read_bytes()
    broken = {
        "broken/empty.jpg": b"",
        "broken/page.jpg": b"<html><body>404 Not Found</body></html>",
        "broken/truncated.jpg": good_jpg[: len(good_jpg) // 2],
    }
    for rel, data in broken.items():
        samples.write_if_changed(src / ARCHIVES[0] / rel, data)
    paths += [f"{ARCHIVES[0]}/{rel}" for rel in broken] + [f"{ARCHIVES[1]}/gone/missing.jpg"]
    served = workdir / "served"
    archives = [served / f"{name}.tar.gz" for name in ARCHIVES]
    for name, archive in zip(ARCHIVES, archives, strict=True):
        samples.write_if_changed(archive, samples.tar_gz(src, name))
    return samples.write_csv(workdir / "products.csv", paths), archives


@dataclass
class ServeLog:
    """What the server did to each file: where it cut the first answer, and the 206s it sent."""

    cut_once: set[str]
    cuts: dict[str, int] = field(default_factory=dict)
    resumed_from: dict[str, list[int]] = field(default_factory=dict)

    def resume_line(self, name: str) -> str:
        """One line for the user: was the download cut and resumed, or reused?"""
        if name not in self.cuts:
            return f"{name}: already downloaded and verified, reused (no request sent)"
        at = self.cuts[name]
        if at in self.resumed_from.get(name, []):
            return f"{name}: connection cut at {at} bytes, resumed (206)"
        return f"{name}: connection cut at {at} bytes, NOT resumed from there"


def _range_start(header: str | None, size: int) -> int | None:
    """The first byte of `Range: bytes=N-` (the form wget sends), or None for no range."""
    if not header or not header.startswith("bytes=") or not header.endswith("-"):
        return None
    start = header[len("bytes=") : -1]
    return int(start) if start.isdigit() and int(start) <= size else None


def _handler(folder: Path, log: ServeLog) -> type[BaseHTTPRequestHandler]:
    class RangeHandler(BaseHTTPRequestHandler):
        """GET/HEAD of files in `folder` with `Range: bytes=N-`; cuts one answer per name."""

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - base signature
            pass

        def do_GET(self) -> None:
            name = self.path.lstrip("/")
            path = folder / name
            if "/" in name or not path.is_file():
                return self.send_error(404)
            data = path.read_bytes()
            start = _range_start(self.headers.get("Range"), len(data))
            self.send_response(200 if start is None else 206)
            if start is not None:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                log.resumed_from.setdefault(name, []).append(start)
            body = data[start or 0 :]
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "HEAD":
                return None
            if name in log.cut_once and name not in log.cuts:
                log.cuts[name] = (start or 0) + len(body) // 2
                body = body[: len(body) // 2]
                self.close_connection = True
            self.wfile.write(body)
            return None

        do_HEAD = do_GET

    return RangeHandler


@contextmanager
def serve_folder(folder: Path, cut_once: set[str]) -> Iterator[tuple[str, ServeLog]]:
    """Serve `folder` on 127.0.0.1 (a free port) while the block runs: (base URL, log).

    The first answer for each name in `cut_once` stops halfway through the body, so wget
    has to resume it with a Range request (a flaky link, reproduced).
    """
    log = ServeLog(cut_once)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(folder, log))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        server.shutdown()
        server.server_close()
