"""An output folder is one dataset, published as one set: run.json, check_output, overwrite."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imgbatch.compute.partition import PartitionSettings, run_partition
from imgbatch.errors import PermanentError, UsageError
from imgbatch.layout import OUTPUT_FORMAT
from imgbatch.output.assemble import assemble
from imgbatch.output.ownership import OutputConflict, check_output, claim_output, dataset_identity
from imgbatch.output.verify import verify_output
from imgbatch.pixels.spec import ImageSpec
from imgbatch.plan.run_plan import make_plan
from imgbatch.sampledata import samples
from imgbatch.storage.base import open_storage

OUTPUTS = ("images.npy", "index.parquet", "preview.png", "run.json")
DEFAULT_SPEC = ImageSpec()


def run(csv, root, out, spec=DEFAULT_SPEC, overwrite=False) -> dict:
    """One run the way the flow does it: claim OUT, plan, every partition, assemble."""
    dataset = dataset_identity(str(csv), "image_path", str(root), spec)
    with claim_output(str(out), dataset, "test run", overwrite):
        storage = open_storage(str(root))
        plan = make_plan(str(csv), "image_path", storage, spec, 10, str(out))
        for p in plan.partitions:
            settings = PartitionSettings(plan.plan_file, str(root), str(out), spec, "threads", 1)
            run_partition(p, settings)
        return assemble(str(out), plan.partitions, plan.n_rows, spec, {}, dataset=dataset)


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stamps(out) -> dict[str, tuple[int, int]]:
    return {f: (os.stat(out / f).st_ino, os.stat(out / f).st_mtime_ns) for f in OUTPUTS}


def test_run_json_records_the_dataset_and_every_file_of_the_set(make_dataset, tmp_path):
    csv, root, _ = make_dataset(25)
    out = tmp_path / "out"
    result = run(csv, root, out, ImageSpec(size=32, resize_mode="pad"))
    doc = json.loads((out / "run.json").read_text())
    assert doc == result and doc["format"] == OUTPUT_FORMAT
    assert doc["dataset"] == {
        "csv": os.path.abspath(csv),
        "csv_sha256": sha(csv),
        "csv_bytes": os.path.getsize(csv),
        "column": "image_path",
        "images": str(Path(root).resolve()),
        "size": 32,
        "resize_mode": "pad",
        "background": [255, 255, 255],
    }
    for name in ("images.npy", "index.parquet", "preview.png"):
        assert doc["files"][name] == {
            "sha256": sha(out / name),
            "bytes": (out / name).stat().st_size,
        }
    assert sorted(os.listdir(out)) == sorted([*OUTPUTS, ".imgbatch.lock", "plan.parquet", "shards"])


def test_same_dataset_rerun_or_touched_csv_rewrites_nothing(make_dataset, tmp_path):
    csv, root, _ = make_dataset(25)
    out = tmp_path / "out"
    run(csv, root, out)
    before = stamps(out)
    run(csv, root, out)
    os.utime(csv)  # new mtime, same bytes: same dataset, same result
    run(csv, root, out)
    assert stamps(out) == before


@pytest.mark.parametrize("change", ["size", "csv", "images"])
def test_a_different_dataset_is_refused_then_replaced_with_overwrite(
    make_dataset, tmp_path, change
):
    csv, root, paths = make_dataset(25)
    out, ref = tmp_path / "out", tmp_path / "ref"
    run(csv, root, out)
    spec, other_csv, other_root = ImageSpec(), csv, root
    if change == "size":
        spec = ImageSpec(size=32)
    elif change == "csv":
        other_csv = samples.write_csv(tmp_path / "other.csv", paths[::-1])
    else:  # the wrong --images root that once replaced a good result with zeros
        other_root = tmp_path / "elsewhere"
        shutil.copytree(root, other_root)
    old = {f: sha(out / f) for f in OUTPUTS}
    with pytest.raises(OutputConflict) as refused:
        run(other_csv, other_root, out, spec)
    message = str(refused.value)
    assert (
        "\n" not in message
        and "set overwrite (--overwrite) to replace it, or use another out (--out)" in message
    )
    expected = {
        "size": "size 64; this run is for csv",
        "csv": f"csv {os.path.abspath(csv)}; this run is for csv {os.path.abspath(other_csv)}",
        "images": f"made from images root {Path(root).resolve()}; this run names {other_root}",
    }[change]
    assert expected in message
    assert {f: sha(out / f) for f in OUTPUTS} == old
    run(other_csv, other_root, out, spec, overwrite=True)
    run(other_csv, other_root, ref, spec)
    verify_output(str(out))
    assert sha(out / "images.npy") == sha(ref / "images.npy")
    assert sha(out / "index.parquet") == sha(ref / "index.parquet")


def test_new_content_at_the_same_csv_path_is_a_rerun(make_dataset, tmp_path):
    csv, root, paths = make_dataset(25)
    out = tmp_path / "out"
    run(csv, root, out)
    samples.write_csv(csv, paths[::-1])
    result = run(csv, root, out)
    index = pd.read_parquet(out / "index.parquet")
    assert index["image_path"].tolist() == paths[::-1]
    assert result["dataset"]["csv_sha256"] == sha(csv)
    verify_output(str(out))


def test_a_moved_csv_with_the_same_bytes_is_the_same_dataset(make_dataset, tmp_path):
    csv, root, _ = make_dataset(15)
    out = tmp_path / "out"
    run(csv, root, out)
    moved = tmp_path / "moved.csv"
    shutil.copy(csv, moved)
    before = sha(out / "images.npy")
    result = run(moved, root, out)
    assert result["dataset"]["csv"] == str(moved) and sha(out / "images.npy") == before


def test_an_unrelated_images_npy_and_run_json_are_refused(make_dataset, tmp_path):
    csv, root, _ = make_dataset(12)
    out = tmp_path / "out"
    out.mkdir()
    np.save(out / "images.npy", np.ones((3, 8, 8, 3), np.uint8))
    (out / "run.json").write_text('{"model": "resnet", "epochs": 3}\n')
    (out / "notes.txt").write_text("mine\n")
    theirs = {f: sha(out / f) for f in ("images.npy", "run.json")}
    with pytest.raises(OutputConflict, match="holds run.json, images.npy not written by imgbatch"):
        run(csv, root, out)
    assert {f: sha(out / f) for f in theirs} == theirs
    result = run(csv, root, out, overwrite=True)
    assert result["rows"] == 12 and (out / "notes.txt").read_text() == "mine\n"
    verify_output(str(out))


def test_files_imgbatch_does_not_know_are_refused_and_kept(make_dataset, tmp_path):
    csv, root, _ = make_dataset(12)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    (out / "model").mkdir()
    with pytest.raises(
        OutputConflict, match=r"did not make: model, notes.txt: set overwrite \(--overwrite\)"
    ):
        run(csv, root, out)
    assert not (out / "images.npy").exists()
    run(csv, root, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine\n" and (out / "model").is_dir()


def test_missing_empty_or_shards_only_out_is_fine(make_dataset, tmp_path):
    csv, root, _ = make_dataset(12)
    dataset = dataset_identity(csv, "image_path", root, ImageSpec())
    check_output(str(tmp_path / "missing"), dataset, False)
    (tmp_path / "empty").mkdir()
    check_output(str(tmp_path / "empty"), dataset, False)
    out = tmp_path / "out"
    storage = open_storage(root)
    plan = make_plan(csv, "image_path", storage, ImageSpec(), 10, str(out))
    settings = PartitionSettings(plan.plan_file, root, str(out), ImageSpec(), "threads", 1)
    run_partition(plan.partitions[0], settings)
    check_output(str(out), dataset, False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        check_output(str(tmp_path / "file"), dataset, False)


@pytest.mark.parametrize("damage", ["swap_index", "flip_preview_byte", "foreign_run_json"])
def test_verify_output_names_the_file_out_of_step(make_dataset, tmp_path, damage):
    csv, root, paths = make_dataset(25)
    out, other = tmp_path / "out", tmp_path / "other"
    run(csv, root, out)
    if damage == "swap_index":  # the state a kill between two renames used to leave
        run(samples.write_csv(tmp_path / "rev.csv", paths[::-1]), root, other)
        shutil.copy(other / "index.parquet", out / "index.parquet")
        match = "index.parquet is out of step with run.json"
    elif damage == "flip_preview_byte":
        data = bytearray((out / "preview.png").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (out / "preview.png").write_bytes(bytes(data))
        match = "preview.png is out of step with run.json: its sha256 differs"
    else:
        (out / "run.json").write_text('{"shape": [25, 64, 64, 3]}\n')
        match = "run.json was not written by this imgbatch"
    with pytest.raises(PermanentError, match=match):
        verify_output(str(out))
