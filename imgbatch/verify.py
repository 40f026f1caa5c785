"""Check a finished output folder against its own run.json: the promise of DESIGN.md, re-read."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pyarrow.parquet as pq

from imgbatch.assemble import IMAGES, INDEX, PREVIEW, RUN
from imgbatch.errors import PermanentError
from imgbatch.files import read_json

HASH_BLOCK = 1 << 24


def verify_output(out: str) -> dict:
    """Raise PermanentError naming the first broken promise; return run.json when all hold.

    Checks: the sha256 of images.npy, its shape and dtype, index.parquet has one row per
    array row in order, failed rows are zero-filled, preview.png exists.
    """
    run = read_json(os.path.join(out, RUN))
    if run is None:
        raise PermanentError(f"{out}: no readable run.json; the run has not finished")
    path = os.path.join(out, IMAGES)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    if digest.hexdigest() != run["images_sha256"]:
        raise PermanentError(f"{path}: sha256 differs from run.json")
    images = np.load(path, mmap_mode="r")
    if images.dtype != np.uint8 or list(images.shape) != run["shape"]:
        raise PermanentError(f"{path}: {images.shape} {images.dtype}, run.json {run['shape']}")
    index = pq.read_table(os.path.join(out, INDEX), columns=["row", "status"])
    rows = index.column("row").to_numpy()
    if not np.array_equal(rows, np.arange(images.shape[0])):
        raise PermanentError(f"{out}/{INDEX}: rows are not 0..N-1 in order")
    status = index.column("status").to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(status != "ok"):
        if images[i].any():
            raise PermanentError(f"row {i} is flagged {status[i]} but not zero-filled")
    if not os.path.exists(os.path.join(out, PREVIEW)):
        raise PermanentError(f"{out}/{PREVIEW} is missing")
    return run
