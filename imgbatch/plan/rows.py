"""The CSV manifest: N ordered rows, each naming one image, cut into partitions."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

from imgbatch.errors import UsageError
from imgbatch.storage.local_file import local_file
from imgbatch.storage.urls import is_gcs_url

HEADER_BYTES = 1 << 16


def check_csv(name: str, column: str) -> None:
    """The CSV (a path or a gs:// URL) exists, its header decodes and names `column`."""
    _check_header(csv_file(name), name, column)


def csv_file(name: str) -> str:
    """The local file holding the CSV `name`: itself, or a copy of a gs:// object's current
    generation (fetched once per generation, crc32c-checked)."""
    if not is_gcs_url(name) and not os.path.isfile(name):
        raise UsageError(f"CSV {name!r} does not exist (or is not a file)")
    return local_file(name, "CSV")


def _check_header(path: str, name: str, column: str) -> None:
    """The header of the local file `path` decodes and names `column` (messages say `name`)."""
    try:  # the first line alone: text mode would decode (and blame line 1 for) a whole buffer
        with open(path, "rb") as f:
            line = f.readline(HEADER_BYTES).decode("utf-8-sig")
        header = next(csv.reader([line]), [])
    except UnicodeDecodeError as exc:
        raise UsageError(f"CSV {name!r} line 1 is not UTF-8 text: {exc.reason}") from None
    except (OSError, csv.Error) as exc:
        raise UsageError(f"CSV {name!r} line 1 cannot be read: {exc}") from None
    if column not in header:
        cols = ", ".join(header) or "none"
        raise UsageError(f"CSV {name!r} has no column {column!r} (columns: {cols})")


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
    """The image path of every row of the CSV (a path or a gs:// URL), in CSV order; an empty
    cell stays an empty string.

    pyarrow reads it (the Parquet engine already): faster than pandas on a large CSV, and its
    errors name the line that does not parse (docs/decisions/csv-by-pyarrow.md)."""
    import pyarrow as pa  # here: the CLI imports check_csv, and its --help must stay light
    import pyarrow.csv as pcsv

    path = csv_file(csv_path)
    _check_header(path, csv_path, column)
    try:
        table = pcsv.read_csv(
            path,
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(
                include_columns=[column],
                column_types={column: pa.string()},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise UsageError(f"CSV {csv_path!r} cannot be read: {_cause(path, exc)}") from None
    paths = table.column(column).to_pylist()
    if not paths:
        raise UsageError(f"CSV {csv_path!r} has no rows")
    damaged = next((i for i, p in enumerate(paths) if "\0" in p), None)
    if damaged is not None:
        raise UsageError(
            f"CSV {csv_path!r} row {damaged} (line {damaged + 2}) has a NUL byte in its "
            f"{column}: the file is damaged"
        )
    return paths


def _cause(path: str, exc: Exception) -> str:
    """pyarrow's reason with the line it is about (read again, on this error path only):
    the first line that is not UTF-8, or the first row whose field count is off."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as bad:
                return f"line {number} is not UTF-8 text ({bad.reason} at byte {bad.start})"
    reason = str(exc).removeprefix("CSV parse error: ")
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = csv.reader(f)
        width = len(next(rows, []))
        for row in rows:
            if row and len(row) != width:
                return f"line {rows.line_num} has {len(row)} fields, the header {width}"
    return reason


def partitions(n_rows: int, partition_size: int) -> list[Partition]:
    """Fixed-size partitions in row order; the last one is ragged."""
    if partition_size <= 0:
        raise UsageError(f"partition size must be positive, got {partition_size}")
    return [
        Partition(i, start, min(start + partition_size, n_rows))
        for i, start in enumerate(range(0, n_rows, partition_size))
    ]
