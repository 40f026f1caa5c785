"""The core pipeline without Prefect: imgbatch.pipeline's one sequence (check, claim OUT,
plan, found check, split done, partitions, assemble), and the building blocks under it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imgbatch import pipeline
from imgbatch.atomic_files import read_json, write_json
from imgbatch.compute.partition import PartitionSettings, run_partition
from imgbatch.layout import IMAGES, INDEX, PREVIEW, RUN
from imgbatch.output import shards
from imgbatch.output.assemble import ShardError, assemble
from imgbatch.output.ownership import OutputConflict
from imgbatch.output.verify import verify_output
from imgbatch.output.writer_lock import OutputBusy, output_lock
from imgbatch.params import PreprocessParams
from imgbatch.pipeline import preprocess, preprocess_run
from imgbatch.pixels.images import standardize
from imgbatch.pixels.spec import ImageSpec
from imgbatch.plan.run_plan import make_plan
from imgbatch.storage.base import open_storage


def run_core(csv, root, out, rows=10, executor="threads", workers=2, order=None, **pixels):
    """One run through the pipeline, partitions in `order` if given; (plan, summaries, run)."""
    params = PreprocessParams(
        csv=str(csv),
        images=str(root),
        out=str(out),
        partition_size=rows,
        executor=executor,
        workers=workers,
        **pixels,
    )

    def compute(run):
        parts = run.todo if order is None else [p for i in order for p in run.todo if p.id == i]
        return [run_partition(p, run.settings) for p in parts], {}

    with preprocess_run(params, "test_pipeline") as run:
        outcome = run.finish(compute)
    return run.plan, outcome.results, outcome.run


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def shard_stamps(out) -> dict[str, tuple[int, int]]:
    d = Path(out) / "shards"
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(d.iterdir())}


def test_rows_stay_aligned_with_missing_duplicate_bad_and_unsorted_rows(make_dataset, tmp_path):
    csv, root, paths = make_dataset(24)
    (Path(root) / "dir.jpg").mkdir()
    rows = paths[::-1] + ["gone/none.jpg", paths[3], "../outside.jpg", "", "dir.jpg", paths[3]]
    pd.DataFrame({"image_path": rows, "x": range(len(rows))}).to_csv(csv, index=False)
    out = tmp_path / "out"
    _, _, run = run_core(csv, root, out, rows=7)

    images = np.load(out / "images.npy", mmap_mode="r")
    index = pd.read_parquet(out / "index.parquet")
    assert images.shape == (len(rows), 64, 64, 3)
    assert index["row"].tolist() == list(range(len(rows)))
    assert index["image_path"].tolist() == rows
    expected_status = ["ok"] * 24 + ["missing", "ok", "rejected", "rejected", "missing", "ok"]
    assert index["status"].tolist() == expected_status
    for i, p in enumerate(rows):
        if expected_status[i] == "ok":
            want, _ = standardize((Path(root) / p).read_bytes(), ImageSpec())
            np.testing.assert_array_equal(images[i], want, err_msg=f"row {i} ({p})")
        else:
            assert not images[i].any(), f"flagged row {i} must be zero-filled"
            assert index.loc[i, "error"], f"flagged row {i} needs a reason"
    np.testing.assert_array_equal(images[25], images[29])
    assert run["counts"] == {"ok": 26, "missing": 2, "rejected": 2}
    assert verify_output(str(out))["images_sha256"] == sha(out / "images.npy")


def test_partition_order_does_not_change_the_output(make_dataset, tmp_path):
    csv, root, _ = make_dataset(35)
    run_core(csv, root, tmp_path / "seq", rows=8)
    run_core(csv, root, tmp_path / "rev", rows=8, order=[4, 2, 0, 3, 1])
    assert sha(tmp_path / "seq/images.npy") == sha(tmp_path / "rev/images.npy")
    assert sha(tmp_path / "seq/index.parquet") == sha(tmp_path / "rev/index.parquet")


def test_processes_and_threads_give_identical_arrays(make_dataset, tmp_path):
    csv, root, _ = make_dataset(20)
    run_core(csv, root, tmp_path / "t", executor="threads", workers=2)
    run_core(csv, root, tmp_path / "p", executor="processes", workers=2)
    assert sha(tmp_path / "t/images.npy") == sha(tmp_path / "p/images.npy")


def test_second_run_recomputes_nothing_and_writes_identical_bytes(make_dataset, tmp_path):
    csv, root, _ = make_dataset(25)
    out = tmp_path / "out"
    _, first, run1 = run_core(csv, root, out)
    stamps = shard_stamps(out)
    digests = {f: sha(out / f) for f in ("images.npy", "index.parquet")}
    _, second, run2 = run_core(csv, root, out)
    assert all(s["computed"] for s in first)
    assert not any(s["computed"] for s in second)
    assert shard_stamps(out) == stamps
    assert {f: sha(out / f) for f in digests} == digests
    assert run1["images_sha256"] == run2["images_sha256"]


def remove_outputs(out: Path) -> None:
    """Delete the published set, keeping the shards."""
    for name in (RUN, IMAGES, INDEX, PREVIEW):
        os.unlink(out / name)


def test_changed_parameter_recomputes_every_partition(make_dataset, tmp_path):
    csv, root, _ = make_dataset(15)
    out = tmp_path / "out"
    run_core(csv, root, out)
    remove_outputs(out)  # OUT then holds only shards, of other pixels
    _, summaries, run = run_core(csv, root, out, size=32)
    assert all(s["computed"] for s in summaries)
    assert np.load(out / "images.npy").shape == (15, 32, 32, 3)
    assert run["shape"] == [15, 32, 32, 3]


def test_changed_source_recomputes_only_its_partition(make_dataset, tmp_path):
    csv, root, paths = make_dataset(30)
    out = tmp_path / "out"
    run_core(csv, root, out)
    before = np.load(out / "images.npy")
    (Path(root) / paths[14]).write_bytes((Path(root) / paths[0]).read_bytes())
    _, summaries, _ = run_core(csv, root, out)
    assert [s["partition"] for s in summaries if s["computed"]] == [1]
    after = np.load(out / "images.npy")
    np.testing.assert_array_equal(after[14], before[0])
    np.testing.assert_array_equal(np.delete(after, 14, 0), np.delete(before, 14, 0))


@pytest.mark.parametrize("damage", ["delete", "truncate", "stale_marker"])
def test_deleted_truncated_or_stale_shard_is_recomputed(make_dataset, tmp_path, damage):
    csv, root, _ = make_dataset(30)
    out = tmp_path / "out"
    _, _, run1 = run_core(csv, root, out)
    p = shards.shard_paths(str(out), 1)
    if damage == "delete":
        os.unlink(p.npy)
    elif damage == "truncate":
        with open(p.npy, "r+b") as f:
            f.truncate(os.path.getsize(p.npy) - 100)
    else:
        record = read_json(p.done)
        record["fingerprint"] = "0" * 64
        write_json(p.done, record)
    _, summaries, run2 = run_core(csv, root, out)
    assert [s["partition"] for s in summaries if s["computed"]] == [1]
    assert run2["images_sha256"] == run1["images_sha256"]


def test_damaged_shard_makes_assembly_refuse_then_rerun_recovers(make_dataset, tmp_path):
    csv, root, _ = make_dataset(30)
    out = tmp_path / "out"
    plan, _, run1 = run_core(csv, root, out)
    remove_outputs(out)
    npy = shards.shard_paths(str(out), 2).npy
    data = bytearray(Path(npy).read_bytes())
    data[-5] ^= 0xFF  # same size, one pixel changed: only the hash can tell
    Path(npy).write_bytes(bytes(data))
    with pytest.raises(ShardError, match="partition 2"):
        assemble(str(out), plan.partitions, plan.n_rows, ImageSpec(), {})
    assert not (out / "images.npy").exists()
    assert not os.path.exists(shards.shard_paths(str(out), 2).done)
    _, summaries, run2 = run_core(csv, root, out)
    assert [s["partition"] for s in summaries if s["computed"]] == [2]
    assert run2["images_sha256"] == run1["images_sha256"]


def test_a_run_that_finds_damaged_shards_mends_them_itself(make_dataset, tmp_path):
    csv, root, _ = make_dataset(30)
    out = tmp_path / "out"
    _, _, run1 = run_core(csv, root, out)
    remove_outputs(out)
    for pid in (0, 2):
        npy = Path(shards.shard_paths(str(out), pid).npy)
        data = bytearray(npy.read_bytes())
        data[-5] ^= 0xFF
        npy.write_bytes(bytes(data))
    _, summaries, run2 = run_core(csv, root, out)  # one rerun: found, recomputed, assembled
    assert [s["partition"] for s in summaries] == [0, 1, 2]
    assert [s["partition"] for s in summaries if s["computed"]] == [0, 2]
    assert run2["images_sha256"] == run1["images_sha256"]
    assert sha(out / "images.npy") == run1["images_sha256"]


def test_assembly_refuses_while_a_partition_is_not_done(make_dataset, tmp_path):
    csv, root, _ = make_dataset(25)
    out = str(tmp_path / "out")
    storage = open_storage(root)
    plan = make_plan(csv, "image_path", storage, ImageSpec(), 10, out)
    for p in plan.partitions[:2]:
        settings = PartitionSettings(plan.plan_file, root, out, ImageSpec(), "threads", 1)
        run_partition(p, settings)
    with pytest.raises(ShardError, match="not done.*2"):
        assemble(out, plan.partitions, plan.n_rows, ImageSpec(), {})
    assert not os.path.exists(os.path.join(out, "images.npy"))


def test_ragged_last_partition_and_partition_records(make_dataset, tmp_path):
    csv, root, _ = make_dataset(23)
    plan, summaries, _ = run_core(csv, root, tmp_path / "out", rows=10)
    assert [(p.start, p.stop) for p in plan.partitions] == [(0, 10), (10, 20), (20, 23)]
    assert [s["rows"] for s in summaries] == [10, 10, 3]
    assert len({p.fingerprint for p in plan.partitions}) == 3


def test_a_new_run_removes_temp_files_of_killed_writers_only(make_dataset, tmp_path):
    csv, root, _ = make_dataset(5)
    shards_dir = tmp_path / "out" / "shards"
    shards_dir.mkdir(parents=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    stale = shards_dir / f"part-00000.npy.tmp-{dead}-0123abcd"
    live = shards_dir / f"part-00000.npy.tmp-{os.getpid()}-4567cdef"
    stale.write_bytes(b"half a shard")
    live.write_bytes(b"being written right now")
    make_plan(csv, "image_path", open_storage(root), ImageSpec(), 10, str(tmp_path / "out"))
    assert not stale.exists() and live.exists()


def test_a_rewritten_plan_is_read_afresh_in_the_same_process(make_dataset, tmp_path):
    from imgbatch.plan.run_plan import read_rows

    csv, root, paths = make_dataset(12)
    out, storage = str(tmp_path / "out"), open_storage(root)
    plan = make_plan(csv, "image_path", storage, ImageSpec(), 5, out)
    assert [read_rows(plan.plan_file, p.id) for p in plan.partitions] == [
        paths[0:5],
        paths[5:10],
        paths[10:12],
    ]
    reordered = paths[::-1]
    pd.DataFrame({"image_path": reordered}).to_csv(csv, index=False)
    plan = make_plan(csv, "image_path", storage, ImageSpec(), 4, out)
    assert [read_rows(plan.plan_file, p.id) for p in plan.partitions] == [
        reordered[0:4],
        reordered[4:8],
        reordered[8:12],
    ]


def test_the_code_version_covers_every_module_that_decides_pixels(tmp_path, monkeypatch):
    """A shard made by other pixel code is never taken as done: every imgbatch module that
    images.py uses lives in imgbatch/pixels, and a change to any file there changes the hash."""
    import shutil
    import types

    from imgbatch.pixels import images
    from imgbatch.plan import run_plan

    used = {
        value.__name__
        for value in vars(images).values()
        if isinstance(value, types.ModuleType) and value.__name__.startswith("imgbatch.")
    }
    used |= {
        value.__module__
        for value in vars(images).values()
        if getattr(value, "__module__", "").startswith("imgbatch.")
    }
    assert {"imgbatch.pixels.png", "imgbatch.pixels.spec"} <= used
    assert all(name.startswith("imgbatch.pixels.") for name in used), used

    before = run_plan.code_version()
    copy = tmp_path / "pixels"
    shutil.copytree(run_plan.PIXELS_DIR, copy)
    monkeypatch.setattr(run_plan, "PIXELS_DIR", copy)
    run_plan._pixel_code.cache_clear()
    assert run_plan.code_version() == before
    with open(copy / "png.py", "a") as f:
        f.write("\n# changed\n")
    run_plan._pixel_code.cache_clear()
    assert run_plan.code_version() != before
    run_plan._pixel_code.cache_clear()


@pytest.mark.parametrize("change", ["pillow", "switch"])
def test_a_changed_pixel_library_or_switch_recomputes_a_finished_output(
    make_dataset, tmp_path, monkeypatch, caplog, change
):
    """After a Pillow upgrade (its version, as imgbatch reads it, changed here) or a flipped
    IMGBATCH_FAST_DECODE, every finished shard is recomputed, with one line saying why;
    then a rerun recomputes none."""
    import PIL

    csv, root, _ = make_dataset(12)
    out = tmp_path / "out"
    monkeypatch.setenv("IMGBATCH_FAST_DECODE", "1")
    first, summaries, _ = run_core(csv, root, out, rows=5)
    assert [s["computed"] for s in summaries] == [True] * 3 and first.note == ""
    again, summaries, _ = run_core(csv, root, out, rows=5)
    assert [s["computed"] for s in summaries] == [False] * 3 and again.note == ""
    if change == "pillow":
        named = f"pillow {PIL.__version__} -> 13.99.0-test"
        monkeypatch.setattr(PIL, "__version__", "13.99.0-test")
    else:
        named = "fast_decode True -> False"
        monkeypatch.setenv("IMGBATCH_FAST_DECODE", "0")
    with caplog.at_level("WARNING", logger="imgbatch.plan.run_plan"):
        after, summaries, _ = run_core(csv, root, out, rows=5)
    assert [s["computed"] for s in summaries] == [True] * 3
    assert named in after.note and "recomputing" in after.note
    assert [r.getMessage() for r in caplog.records if r.name == "imgbatch.plan.run_plan"] == [
        after.note
    ]
    done = [read_json(shards.shard_paths(str(out), p.id).done) for p in after.partitions]
    assert [d["fingerprint"] for d in done] == [p.fingerprint for p in after.partitions]
    assert {p.fingerprint for p in after.partitions}.isdisjoint(
        p.fingerprint for p in first.partitions
    )
    last, summaries, _ = run_core(csv, root, out, rows=5)
    assert [s["computed"] for s in summaries] == [False] * 3 and last.note == ""


def test_the_code_version_names_the_libraries_that_decide_pixels(monkeypatch):
    import PIL

    from imgbatch.pixels.images import pixel_libraries
    from imgbatch.plan.run_plan import code_version

    monkeypatch.setenv("IMGBATCH_FAST_DECODE", "1")
    libs, version = pixel_libraries(), code_version()
    assert libs["pillow"] == PIL.__version__ and libs["imagecodecs"] and libs["fast_decode"]
    assert libs["libjpeg"] and libs["zlib"]
    monkeypatch.setattr(PIL, "__version__", "0.0.1")
    assert code_version() != version
    monkeypatch.undo()
    monkeypatch.setenv("IMGBATCH_FAST_DECODE", "0")
    assert pixel_libraries()["imagecodecs"] is None and code_version() != version


def test_preprocess_runs_the_whole_job_without_prefect(make_dataset, tmp_path):
    """The notebook way: one call, the same bytes as the step-by-step run, a rerun no work."""
    csv, root, _ = make_dataset(23, extra=["gone.jpg"])
    params = PreprocessParams(csv=csv, images=root, out=str(tmp_path / "nb"), partition_size=10)
    outcome = preprocess(params)
    assert outcome.run["counts"] == {"ok": 23, "missing": 1}
    assert [r["computed"] for r in outcome.results] == [True, True, True]
    run_core(csv, root, tmp_path / "steps")
    assert sha(tmp_path / "nb/images.npy") == sha(tmp_path / "steps/images.npy")
    again = preprocess(params)
    assert not any(r["computed"] for r in again.results)
    assert again.run["images_sha256"] == outcome.run["images_sha256"]


def test_preprocess_holds_the_writer_lock_and_checks_ownership(make_dataset, tmp_path):
    csv, root, _ = make_dataset(6)
    out = tmp_path / "out"
    params = PreprocessParams(csv=csv, images=root, out=str(out), partition_size=3)
    with output_lock(str(out), "another run"), pytest.raises(OutputBusy, match="another run"):
        preprocess(params)
    assert not (out / "shards").exists(), "a refused run computes nothing"
    preprocess(params)
    with pytest.raises(OutputConflict, match="--overwrite"):
        preprocess(params.model_copy(update={"size": 32}))
    assert np.load(out / "images.npy").shape == (6, 64, 64, 3)


def test_a_failed_partition_leaves_the_others_committed(make_dataset, tmp_path, monkeypatch):
    csv, root, _ = make_dataset(30)
    out = tmp_path / "out"
    params = PreprocessParams(csv=csv, images=root, out=str(out), partition_size=10)
    real = pipeline.run_partition

    def fail_one(part, settings):
        if part.id == 1:
            raise OSError("disk says no (injected)")
        return real(part, settings)

    monkeypatch.setattr(pipeline, "run_partition", fail_one)
    with pytest.raises(pipeline.PartitionsFailed, match="1 of 3 partitions failed.*rows 10-19"):
        preprocess(params)
    assert sorted(p.name for p in (out / "shards").glob("*.done.json")) == [
        "part-00000.done.json",
        "part-00002.done.json",
    ]
    assert not (out / "images.npy").exists()
    monkeypatch.setattr(pipeline, "run_partition", real)
    outcome = preprocess(params)
    assert [r["partition"] for r in outcome.results if r["computed"]] == [1]


def test_chosen_partitions_leave_the_output_unassembled_until_the_rest_are_done(
    make_dataset, tmp_path
):
    csv, root, _ = make_dataset(30)
    params = PreprocessParams(
        csv=csv, images=root, out=str(tmp_path / "out"), partition_size=10, partitions=[2]
    )
    outcome = preprocess(params)
    assert outcome.run is None and "2 partitions outside [2] are not done" in outcome.note
    assert preprocess(params.model_copy(update={"partitions": None})).run["rows"] == 30


def test_a_process_that_lets_pillow_load_truncated_files_is_refused_before_any_work(
    make_dataset, tmp_path, monkeypatch
):
    """Pillow would pad a truncated file silently; imgbatch never changes the caller's
    setting, so the run stops at once in one line instead of flagging every row."""
    from PIL import ImageFile

    from imgbatch.errors import UsageError

    csv, root, _ = make_dataset(3)
    out = tmp_path / "out"
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    params = PreprocessParams(csv=csv, images=root, out=str(out), partition_size=3)
    with pytest.raises(UsageError, match="LOAD_TRUNCATED_IMAGES is on") as refused:
        preprocess(params)
    assert "\n" not in str(refused.value) and not out.exists()
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)
    assert preprocess(params).run["counts"] == {"ok": 3}
