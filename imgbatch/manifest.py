"""The CSV manifest: N ordered rows, each naming one image, cut into partitions."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd

from imgbatch.errors import UsageError

DEFAULT_COLUMN = "image_path"
DEFAULT_PARTITION_SIZE = 1000


@dataclass(frozen=True)
class Partition:
    """Rows [start, stop) of the CSV; partition i starts at i * partition_size."""

    id: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def check_csv(csv_path: str, column: str) -> None:
    """Fail fast (header only) when the CSV is missing, unreadable or lacks the column."""
    if not os.path.isfile(csv_path):
        raise UsageError(f"CSV {csv_path!r} does not exist")
    try:
        header = pd.read_csv(csv_path, nrows=0)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise UsageError(f"CSV {csv_path!r} cannot be read: {exc}") from None
    if column not in header.columns:
        cols = ", ".join(map(str, header.columns)) or "none"
        raise UsageError(f"CSV {csv_path!r} has no column {column!r} (columns: {cols})")


def read_paths(csv_path: str, column: str) -> list[str]:
    """The image path of every row, in CSV order; an empty cell stays an empty string."""
    check_csv(csv_path, column)
    df = pd.read_csv(csv_path, usecols=[column], dtype=str, keep_default_na=False)
    if len(df) == 0:
        raise UsageError(f"CSV {csv_path!r} has no rows")
    return df[column].tolist()


def partitions(n_rows: int, partition_size: int) -> list[Partition]:
    """Fixed-size partitions in row order; the last one is ragged."""
    if partition_size <= 0:
        raise UsageError(f"partition size must be positive, got {partition_size}")
    return [
        Partition(i, start, min(start + partition_size, n_rows))
        for i, start in enumerate(range(0, n_rows, partition_size))
    ]


def parse_partition_ids(text: str) -> list[int]:
    """'3,7' or '0-4,9' -> sorted unique ids."""
    ids: set[int] = set()
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, _, hi = part.partition("-")
            ids.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise UsageError(f"--partitions must look like 3,7 or 0-4, got {text!r}") from None
    if not ids:
        raise UsageError("--partitions names no partition")
    return sorted(ids)
