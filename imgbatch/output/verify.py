"""Check a finished output (a folder or gs://) against its own run.json, the set's commit record."""

from __future__ import annotations

import hashlib
from typing import BinaryIO

import google_crc32c
import numpy as np

from imgbatch.atomic_files import HASH_BLOCK
from imgbatch.errors import PermanentError
from imgbatch.layout import IMAGES, INDEX, OUTPUT_FORMAT, PREVIEW, RUN
from imgbatch.output.writer_lock import output_lock
from imgbatch.outstore.base import OutputStore, open_output
from imgbatch.outstore.crc32c import to_b64


def verify_output(out: str, hashes: bool = True) -> dict:
    """Raise PermanentError naming the first broken promise; return run.json when all hold.

    An interrupted publish is finished first (taking the output lock: OutputBusy while a
    run is writing OUT). Checks: images.npy, index.parquet and preview.png have the size
    (and on a bucket the generation) and, with `hashes`, which reads every byte, the sha256
    that run.json records; the array's shape and dtype; index.parquet has one row per array
    row, in order; flagged rows are zero-filled. A composed images.npy (gs://) is checked by
    the crc32c run.json records for it instead of a sha256.
    """
    store = open_output(out)
    if not store.settled({}):
        with output_lock(out, "verify_output"):
            store.recover()
    run = store.read_json(RUN)
    if run is None:
        raise PermanentError(f"{out}: no readable run.json; the run has not finished")
    if run.get("format") != OUTPUT_FORMAT or not isinstance(run.get("files"), dict):
        raise PermanentError(f"{out}/{RUN} was not written by this imgbatch (no {OUTPUT_FORMAT})")
    for name in (IMAGES, INDEX, PREVIEW):
        _check_file(store, name, run["files"].get(name), hashes)
    version = run["files"][IMAGES].get("generation")
    index = store.read_parquet(INDEX, columns=["row", "status"])
    with store.open_read(IMAGES, version) as f:
        shape, _, dtype, offset = npy_header(f)
        if dtype != np.uint8 or list(shape) != run["shape"]:
            raise PermanentError(f"{store.where(IMAGES)}: {shape} {dtype}, run.json {run['shape']}")
        rows = index.column("row").to_numpy()
        if not np.array_equal(rows, np.arange(shape[0])):
            raise PermanentError(f"{out}/{INDEX}: rows are not 0..N-1 in order")
        status = index.column("status").to_numpy(zero_copy_only=False)
        row_bytes = int(np.prod(shape[1:]))
        for i in np.flatnonzero(status != "ok"):
            f.seek(offset + int(i) * row_bytes)
            if any(f.read(row_bytes)):
                raise PermanentError(f"row {i} is flagged {status[i]} but not zero-filled")
    return run


def npy_header(f: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran order, dtype, offset of the data) of the .npy file `f` is open on,
    read from its header alone; `f` is left at the data."""
    if np.lib.format.read_magic(f) == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    return shape, fortran, dtype, f.tell()


def _check_file(store: OutputStore, name: str, record: dict | None, hashes: bool) -> None:
    """The file is the one run.json recorded: same size (and generation), same sha256."""
    path = store.where(name)
    if record is None:
        raise PermanentError(f"{store.url}/{RUN} records no {name}")
    stat = store.stat(name)
    if stat is None:
        raise PermanentError(f"{path} is missing (run.json records it)")
    if stat.size != record["bytes"]:
        says = record["bytes"]
        raise PermanentError(
            f"{path} is out of step with run.json: {stat.size} bytes, run.json says {says}"
        )
    if "generation" in record and stat.version != record["generation"]:
        raise PermanentError(f"{path} is out of step with run.json: it was replaced since")
    kind = "sha256" if "sha256" in record else "crc32c"  # a composed file has no sha256
    if hashes and _digest(store, name, stat.version, kind) != record[kind]:
        raise PermanentError(f"{path} is out of step with run.json: its {kind} differs")


def _digest(store: OutputStore, name: str, version: str | None, kind: str) -> str:
    """The file's sha256 (hex) or crc32c (base64, as GCS reports it), from every byte."""
    digest = hashlib.sha256() if kind == "sha256" else google_crc32c.Checksum()
    with store.open_read(name, version) as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    if kind == "sha256":
        return digest.hexdigest()
    return to_b64(int.from_bytes(digest.digest(), "big"))
