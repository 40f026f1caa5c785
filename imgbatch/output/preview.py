"""A contact sheet of processed images, so a person can look at the output at a glance."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from imgbatch.atomic_files import atomic_path
from imgbatch.outstore.base import locate

# (start, length) -> those bytes of images.npy: a local file's, or a remote object's
ReadRange = Callable[[int, int], bytes]

GRID = 8
MIN_TILE = 64
FAILED_COLOR = (220, 30, 30)


def pick_rows(n_rows: int, count: int = GRID * GRID) -> np.ndarray:
    """Evenly spaced rows across the whole array (first and last included)."""
    return np.unique(np.linspace(0, n_rows - 1, num=min(count, n_rows)).round().astype(np.int64))


def _failed_among(index_parquet: str, rows: set[int]) -> set[int]:
    """Which of `rows` are flagged, streaming the index (memory does not grow with N)."""
    failed = set()
    for batch in pq.ParquetFile(index_parquet).iter_batches(columns=["row", "status"]):
        for row, status in zip(
            batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True
        ):
            if status != "ok" and row in rows:
                failed.add(row)
    return failed


def file_range(path: str) -> ReadRange:
    """Byte ranges of a local file by pread: a memory map would pull whole page-cache folios
    into our RSS."""

    def read(start: int, length: int) -> bytes:
        with open(path, "rb") as f:
            return os.pread(f.fileno(), length, start)

    return read


def write_preview(
    path: str, shape: tuple[int, ...], offset: int, read: ReadRange, index_parquet: str
) -> None:
    """Up to 64 tiles from across the (N, S, S, 3) array whose data starts at `offset` of
    the file `read` reads; failed rows get a red cross. Rows are read in parallel: on a
    bucket each is a round trip."""
    rows = pick_rows(shape[0])
    failed = _failed_among(index_parquet, set(rows.tolist()))
    size = shape[1]
    row_bytes = int(np.prod(shape[1:]))
    with ThreadPoolExecutor(8) as pool:
        data = list(pool.map(lambda r: read(offset + int(r) * row_bytes, row_bytes), rows))
    tile = max(size, MIN_TILE)
    cols = min(GRID, len(rows))
    sheet = Image.new("RGB", (cols * tile, -(-len(rows) // cols) * tile), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    for k, row in enumerate(rows):
        x, y = (k % cols) * tile, (k // cols) * tile
        pixels = np.frombuffer(data[k], dtype=np.uint8).reshape(shape[1:])
        img = Image.fromarray(pixels).resize((tile, tile), Image.Resampling.NEAREST)
        sheet.paste(img, (x, y))
        if row in failed:
            draw.rectangle((x, y, x + tile - 1, y + tile - 1), outline=FAILED_COLOR, width=3)
            draw.line((x, y, x + tile - 1, y + tile - 1), fill=FAILED_COLOR, width=3)
            draw.line((x, y + tile - 1, x + tile - 1, y), fill=FAILED_COLOR, width=3)
    with atomic_path(path) as tmp:
        sheet.save(tmp, "PNG")


def preview_jpeg(path: str, side: int = 384) -> bytes:
    """The contact sheet at `path` (in a folder or on gs://) as a small JPEG, for embedding
    where a file cannot be opened (a markdown artifact in the Prefect UI renders a data: URI
    image)."""
    store, name = locate(path)
    with store.open_read(name) as f, Image.open(f) as img:
        small = img.convert("RGB")
        small.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=85)
    return buf.getvalue()
