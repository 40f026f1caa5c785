"""A contact sheet of processed images, so a person can look at the output at a glance."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from imgbatch.files import atomic_path

GRID = 8
MIN_TILE = 64
FAILED_COLOR = (220, 30, 30)


def pick_rows(n_rows: int, count: int = GRID * GRID) -> np.ndarray:
    """Evenly spaced rows across the whole array (first and last included)."""
    return np.unique(np.linspace(0, n_rows - 1, num=min(count, n_rows)).round().astype(np.int64))


def write_preview(path: str, images_npy: str, index_parquet: str) -> None:
    """Up to 64 tiles from across the array; failed rows get a red cross."""
    images = np.load(images_npy, mmap_mode="r")
    rows = pick_rows(images.shape[0])
    status = (
        pq.read_table(index_parquet, columns=["status"])
        .column("status")
        .to_numpy(zero_copy_only=False)
    )
    size = images.shape[1]
    tile = max(size, MIN_TILE)
    cols = min(GRID, len(rows))
    sheet = Image.new("RGB", (cols * tile, -(-len(rows) // cols) * tile), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    for k, row in enumerate(rows):
        x, y = (k % cols) * tile, (k // cols) * tile
        img = Image.fromarray(np.asarray(images[row])).resize(
            (tile, tile), Image.Resampling.NEAREST
        )
        sheet.paste(img, (x, y))
        if status[row] != "ok":
            draw.rectangle((x, y, x + tile - 1, y + tile - 1), outline=FAILED_COLOR, width=3)
            draw.line((x, y, x + tile - 1, y + tile - 1), fill=FAILED_COLOR, width=3)
            draw.line((x, y + tile - 1, x + tile - 1, y), fill=FAILED_COLOR, width=3)
    with atomic_path(path) as tmp:
        sheet.save(tmp, "PNG")
