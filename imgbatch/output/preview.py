"""A contact sheet of processed images, so a person can look at the output at a glance."""

from __future__ import annotations

import io
import os

import numpy as np
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from imgbatch.atomic_files import atomic_path
from imgbatch.outstore.base import locate

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


def _read_row(path: str, offset: int, row: int, row_bytes: int, shape) -> np.ndarray:
    """One row by pread: a memory map would pull whole page-cache folios into our RSS."""
    with open(path, "rb") as f:
        data = os.pread(f.fileno(), row_bytes, offset + row * row_bytes)
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def write_preview(path: str, images_npy: str, index_parquet: str) -> None:
    """Up to 64 tiles from across the array; failed rows get a red cross."""
    header = np.load(images_npy, mmap_mode="r")  # shape and data offset only
    shape, offset = header.shape, header.offset
    del header
    rows = pick_rows(shape[0])
    failed = _failed_among(index_parquet, set(rows.tolist()))
    size = shape[1]
    row_bytes = int(np.prod(shape[1:]))
    tile = max(size, MIN_TILE)
    cols = min(GRID, len(rows))
    sheet = Image.new("RGB", (cols * tile, -(-len(rows) // cols) * tile), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    for k, row in enumerate(rows):
        x, y = (k % cols) * tile, (k // cols) * tile
        img = Image.fromarray(_read_row(images_npy, offset, row, row_bytes, shape[1:])).resize(
            (tile, tile), Image.Resampling.NEAREST
        )
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
