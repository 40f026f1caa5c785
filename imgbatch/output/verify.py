"""Check a finished output folder against its own run.json, the set's commit record."""

from __future__ import annotations

import os

import numpy as np

from imgbatch.atomic_files import file_digest, read_json, read_parquet
from imgbatch.errors import PermanentError
from imgbatch.layout import IMAGES, INDEX, JOURNAL, OUTPUT_FORMAT, PREVIEW, RUN
from imgbatch.output.publish import recover
from imgbatch.output.writer_lock import output_lock


def verify_output(out: str, hashes: bool = True) -> dict:
    """Raise PermanentError naming the first broken promise; return run.json when all hold.

    An interrupted publish is finished first (taking the output lock: OutputBusy while a
    run is writing OUT). Checks: images.npy, index.parquet and preview.png have the size
    and (with `hashes`, which reads every byte) the sha256 that run.json records; the array's
    shape and dtype; index.parquet has one row per array row, in order; flagged rows are
    zero-filled.
    """
    if os.path.exists(os.path.join(out, JOURNAL)):
        with output_lock(out, "verify_output"):
            recover(out)
    run = read_json(os.path.join(out, RUN))
    if run is None:
        raise PermanentError(f"{out}: no readable run.json; the run has not finished")
    if run.get("format") != OUTPUT_FORMAT or not isinstance(run.get("files"), dict):
        raise PermanentError(f"{out}/{RUN} was not written by this imgbatch (no {OUTPUT_FORMAT})")
    for name in (IMAGES, INDEX, PREVIEW):
        _check_file(out, name, run["files"].get(name), hashes)
    path = os.path.join(out, IMAGES)
    images = np.load(path, mmap_mode="r")
    if images.dtype != np.uint8 or list(images.shape) != run["shape"]:
        raise PermanentError(f"{path}: {images.shape} {images.dtype}, run.json {run['shape']}")
    index = read_parquet(os.path.join(out, INDEX), columns=["row", "status"])
    rows = index.column("row").to_numpy()
    if not np.array_equal(rows, np.arange(images.shape[0])):
        raise PermanentError(f"{out}/{INDEX}: rows are not 0..N-1 in order")
    status = index.column("status").to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(status != "ok"):
        if images[i].any():
            raise PermanentError(f"row {i} is flagged {status[i]} but not zero-filled")
    return run


def _check_file(out: str, name: str, record: dict | None, hashes: bool) -> None:
    """The file is the one run.json recorded: same size, same sha256."""
    path = os.path.join(out, name)
    if record is None:
        raise PermanentError(f"{out}/{RUN} records no {name}")
    try:
        size = os.path.getsize(path)
    except OSError:
        raise PermanentError(f"{path} is missing (run.json records it)") from None
    if size != record["bytes"]:
        raise PermanentError(
            f"{path} is out of step with run.json: {size} bytes, run.json says {record['bytes']}"
        )
    if hashes and file_digest(path)[0] != record["sha256"]:
        raise PermanentError(f"{path} is out of step with run.json: its sha256 differs")
