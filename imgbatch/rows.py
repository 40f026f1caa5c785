"""The CSV manifest: N ordered rows, each naming one image, cut into partitions."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from imgbatch.errors import UsageError
from imgbatch.preflight import check_csv


@dataclass(frozen=True)
class Partition:
    """Rows [start, stop) of the CSV; partition i starts at i * partition_size."""

    id: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def read_paths(csv_path: str, column: str) -> list[str]:
    """The image path of every row, in CSV order; an empty cell stays an empty string."""
    check_csv(csv_path, column)
    df = pd.read_csv(csv_path, usecols=[column], dtype=str, keep_default_na=False)
    if len(df) == 0:
        raise UsageError(f"CSV {csv_path!r} has no rows")
    paths = df[column].tolist()
    damaged = next((i for i, p in enumerate(paths) if "\0" in p), None)
    if damaged is not None:
        raise UsageError(
            f"CSV {csv_path!r} row {damaged} (line {damaged + 2}) has a NUL byte in its "
            f"{column}: the file is damaged"
        )
    return paths


def partitions(n_rows: int, partition_size: int) -> list[Partition]:
    """Fixed-size partitions in row order; the last one is ragged."""
    if partition_size <= 0:
        raise UsageError(f"partition size must be positive, got {partition_size}")
    return [
        Partition(i, start, min(start + partition_size, n_rows))
        for i, start in enumerate(range(0, n_rows, partition_size))
    ]
