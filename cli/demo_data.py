"""Sample data for `imgbatch demo`: archives in the seed's layout, served on 127.0.0.1.

Real photos from scikit-image's wheel (plus a few broken files and one missing row) are
packed into two .tar.gz archives in the seed's layout (each archive's members carry their
category folder, the CSV names `category/file.jpg`) and served on 127.0.0.1; the
prepare-dataset flow then downloads them with wget, verifies and extracts them as tar would,
and preprocesses the CSV's rows.
Rerunning the demo reuses everything: same archives, same extraction, cached partitions.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sampledata import samples

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


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - base class signature
        pass


@contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve `folder` over HTTP on 127.0.0.1 (a free port) while the block runs."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
