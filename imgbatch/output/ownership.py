"""An output folder holds one dataset: a run never replaces another dataset's result, or
files imgbatch did not make, unless asked to (overwrite), the way img2dataset's
incremental and overwrite modes work.

A dataset's identity is what decides which images land in which row: the CSV, its column,
the images root and the pixel parameters. The CSV counts as the same when it has the same
absolute path or gs:// URL (new content there is a rerun: the partitions whose rows changed
recompute) or the same sha256 (a moved or copied CSV, also from a folder to a bucket). The
sha256, not size + mtime (or a generation), because a copy gets a new mtime and generation
and a rewrite can keep the size; hashing a CSV costs about a second per GB, and the CSV is
read in full by the plan anyway (docs/decisions/csv-on-gcs.md).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imgbatch.atomic_files import STAGED, TEMP, file_digest
from imgbatch.errors import ImgbatchError, UsageError
from imgbatch.layout import (
    IMAGES,
    INDEX,
    JOURNAL,
    LOCK_NAME,
    NORMALIZED,
    OUTPUT_FORMAT,
    PLAN_FILE,
    PREVIEW,
    RUN,
    SHARDS_DIR,
)
from imgbatch.output.writer_lock import output_lock
from imgbatch.outstore.base import OutputStore, open_output
from imgbatch.pixels.spec import ImageSpec
from imgbatch.plan.images_found import locate
from imgbatch.plan.rows import csv_file
from imgbatch.storage.urls import is_gcs_url

OUTPUTS = (RUN, IMAGES, INDEX, PREVIEW, NORMALIZED)  # the commit record first
OWN_NAMES = frozenset({*OUTPUTS, PLAN_FILE, SHARDS_DIR, JOURNAL, LOCK_NAME})
SAME_KEYS = ("column", "images", "size", "resize_mode", "background")
# Parameter names as the run form shows them, with the command's option: read in both places.
ADVICE = "set overwrite (--overwrite) to replace it, or use another out (--out)"


class OutputConflict(UsageError):
    """OUT holds another dataset's result or files imgbatch did not make."""


def dataset_identity(csv: str, column: str, images: str, spec: ImageSpec) -> dict:
    """What a run would write, as recorded in run["dataset"] and compared by check_output."""
    sha256, size = file_digest(csv_file(csv))
    root = images.rstrip("/") if is_gcs_url(images) else str(Path(images).resolve())
    return {
        "csv": csv if is_gcs_url(csv) else os.path.abspath(csv),
        "csv_sha256": sha256,
        "csv_bytes": size,
        "column": column,
        "images": root,
        "size": spec.size,
        "resize_mode": spec.resize_mode,
        "background": list(spec.background),
    }


def same_dataset(old: dict, new: dict) -> bool:
    """Same column, images root and pixel parameters, and the same CSV path or content."""
    same_csv = old.get("csv") == new["csv"] or old.get("csv_sha256") == new["csv_sha256"]
    return same_csv and all(old.get(k) == new[k] for k in SAME_KEYS)


@contextmanager
def claim_output(
    out: str, dataset: dict, label: str, overwrite: bool = False, wait: float = 0
) -> Iterator[str | None]:
    """What a run does before any work on OUT, in this order, held for the whole run: take
    the writer lock (OutputBusy), finish an interrupted publish, check that OUT is this
    dataset's (OutputConflict). Yields recover's note (None when there was nothing to do).
    """
    with output_lock(out, label, wait):
        note = open_output(out).recover()
        check_output(out, dataset, overwrite)
        yield note


def check_output(out: str, dataset: dict, overwrite: bool = False) -> None:
    """Refuse (OutputConflict, one line) to write `dataset` into an OUT that holds another one.

    Fine: a missing or empty OUT, or one holding imgbatch's own result or shards of the
    same dataset (a rerun is incremental; overwrite changes nothing then). Refused unless
    `overwrite`: a finished result of a different dataset, outputs without imgbatch's
    run.json, or names imgbatch does not use. With `overwrite` nothing is deleted here: the
    old set stays whole until the new run publishes its own over it (assemble), so a
    replacement that fails (a wrong images root, a crash) leaves the old result as it was.
    Files with other names are kept (imgbatch never deletes what it does not know).
    Call it holding writer_lock.output_lock(out, ...), after the store's recover().
    """
    store = open_output(out)
    names = store.names()
    if names is None or overwrite:
        return
    conflict = _result_conflict(store, names, dataset)
    if foreign := foreign_names(names):
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        conflict = conflict or f"{out} holds files imgbatch did not make: {shown}: {ADVICE}"
    if conflict:
        raise OutputConflict(conflict)


def _result_conflict(store: OutputStore, names: dict[str, bool], dataset: dict) -> str | None:
    """Why OUT's outputs are not this dataset's, and what to do (None: no outputs, or ours of
    this dataset)."""
    out = store.url
    present = [n for n in OUTPUTS if n in names]
    if not present:
        return None
    run = store.read_json(RUN)
    if not run or run.get("format") != OUTPUT_FORMAT:
        made = ", ".join(present)
        return f"{out} holds {made} not written by imgbatch (no run.json of ours): {ADVICE}"
    old = run.get("dataset")
    if not isinstance(old, dict):
        return f"{out} holds {IMAGES} of a dataset its run.json does not record: {ADVICE}"
    if same_dataset(old, dataset):
        return None
    keys = [k for k in SAME_KEYS if old.get(k) != dataset[k]]
    if keys == ["images"]:
        hint = _root_hint(dataset)
        return (
            f"{out} holds {IMAGES} made from images root {old.get('images')}; this run names "
            f"{dataset['images']}{f' ({hint})' if hint else ''}. Check images (--images) "
            f"first; if it is right, {ADVICE}"
        )
    was, now = _describe(old, keys), _describe(dataset, keys)
    return f"{out} holds {IMAGES} for {was}; this run is for {now}: {ADVICE}"


def _describe(dataset: dict, keys: list[str]) -> str:
    """'csv /a/b.csv size 64': the CSV and the fields that differ."""
    return " ".join([f"csv {dataset.get('csv')}"] + [f"{k} {dataset.get(k)}" for k in keys])


def _root_hint(dataset: dict) -> str | None:
    """'found at ...: is the images root one folder too high?' when the CSV's first image is
    not under the new root but near it (the usual cause of a changed root is a typo)."""
    root = dataset["images"]
    if is_gcs_url(root):
        return None
    try:
        with open(csv_file(dataset["csv"]), newline="", encoding="utf-8-sig") as f:
            first = next(csv.DictReader(f), None) or {}
    except (OSError, UnicodeDecodeError, csv.Error, ImgbatchError):
        return None
    rel = first.get(dataset["column"]) or ""
    if not rel or os.path.isfile(os.path.join(root, rel)):
        return None
    return locate(root, rel)


def foreign_names(names: dict[str, bool]) -> list[str]:
    """Names in OUT (name -> is a folder) that imgbatch does not use (its temp and staged
    files count as its own)."""
    foreign = []
    for name, is_dir in sorted(names.items()):
        base = name
        while (m := TEMP.search(base) or STAGED.search(base)) is not None:
            base = base[: m.start()]
        if base not in OWN_NAMES or (name == SHARDS_DIR) != is_dir:
            foreign.append(name)
    return foreign
