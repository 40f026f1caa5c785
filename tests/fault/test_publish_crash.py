"""A publish killed at any step leaves, after recovery, the old set or the new one.

The old set comes from a CSV; the CSV is then rewritten in reverse order (same path: a
rerun, the case where a kill once left the new images.npy beside the old index.parquet),
its shards computed, and a child process assembles it. The child replaces os.replace and
os.unlink with wrappers that SIGKILL it just before or after the call on a chosen name, so
no test hook lives in imgbatch. Recovery must give a folder that verifies and whose
images.npy and index.parquet are both the old ones or both the new ones.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imgbatch.compute.partition import PartitionSettings, run_partition
from imgbatch.output.assemble import assemble
from imgbatch.output.ownership import claim_output, dataset_identity
from imgbatch.output.shards import shard_paths
from imgbatch.output.verify import verify_output
from imgbatch.pixels.spec import ImageSpec
from imgbatch.plan.run_plan import make_plan
from imgbatch.sampledata import samples
from imgbatch.storage.base import open_storage

SPEC = ImageSpec(size=16)
PARTITION_SIZE = 10

CHILD = """
import os, re, signal, sys
from imgbatch.output.assemble import assemble
from imgbatch.output.ownership import dataset_identity
from imgbatch.plan.run_plan import make_plan
from imgbatch.pixels.spec import ImageSpec
from imgbatch.storage.base import open_storage

out, csv, root, when, op, pattern = sys.argv[1:]

def killing(real, name):
    def call(*args, **kwargs):
        hit = name == op and re.search(pattern, os.path.basename(args[-1]))
        if hit and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        if hit and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return call

spec = ImageSpec(size=16)
plan = make_plan(csv, "image_path", open_storage(root), spec, 10, out)
dataset = dataset_identity(csv, "image_path", root, spec)
os.replace = killing(os.replace, "replace")
os.unlink = killing(os.unlink, "unlink")
assemble(out, plan.partitions, plan.n_rows, spec, {}, dataset=dataset)
"""


@dataclass(frozen=True)
class Sets:
    out: Path
    csv: str
    root: str
    old: tuple[np.ndarray, list[str]]
    new: tuple[np.ndarray, list[str]]


def run(csv: str, root: str, out: Path) -> list[dict]:
    """A whole run the way the flow does it; the partition summaries."""
    dataset = dataset_identity(csv, "image_path", root, SPEC)
    with claim_output(str(out), dataset, "test run"):
        storage = open_storage(root)
        plan = make_plan(csv, "image_path", storage, SPEC, PARTITION_SIZE, str(out))
        summaries = [
            run_partition(p, PartitionSettings(plan.plan_file, root, str(out), SPEC, "threads", 1))
            for p in plan.partitions
        ]
        assemble(str(out), plan.partitions, plan.n_rows, SPEC, {}, dataset=dataset)
    return summaries


def contents(out: Path) -> tuple[np.ndarray, list[str]]:
    images = np.load(out / "images.npy")
    return images, pd.read_parquet(out / "index.parquet")["image_path"].tolist()


@pytest.fixture
def sets(make_dataset, tmp_path: Path) -> Sets:
    """OUT holds the old set and the new CSV's shards; the new set is known from a clean run."""
    csv, root, paths = make_dataset(30, min_side=32, max_side=64)
    out, ref = tmp_path / "out", tmp_path / "ref"
    run(csv, root, out)
    old = contents(out)
    samples.write_csv(csv, paths[::-1])
    run(csv, root, ref)
    new = contents(ref)
    assert old[1] != new[1] and not np.array_equal(old[0], new[0])
    storage = open_storage(root)
    plan = make_plan(csv, "image_path", storage, SPEC, PARTITION_SIZE, str(out))
    for p in plan.partitions:
        run_partition(p, PartitionSettings(plan.plan_file, root, str(out), SPEC, "threads", 1))
    return Sets(out, csv, root, old, new)


def kill_child(s: Sets, when: str, op: str, pattern: str) -> None:
    argv = [sys.executable, "-c", CHILD, str(s.out), s.csv, s.root, when, op, pattern]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"the kill point was never reached: {proc.stderr}"


def assert_set(s: Sets, expected: tuple[np.ndarray, list[str]]) -> None:
    """Verifies, and images.npy and index.parquet are the same one of the two sets."""
    verify_output(str(s.out))
    images, paths = contents(s.out)
    assert paths == expected[1]
    np.testing.assert_array_equal(images, expected[0])
    leftovers = [n for n in os.listdir(s.out) if ".staged-" in n or ".tmp-" in n or n[0] == "."]
    assert leftovers == [".imgbatch.lock"]


def recover_as_next_run(s: Sets) -> str | None:
    dataset = dataset_identity(s.csv, "image_path", s.root, SPEC)
    with claim_output(str(s.out), dataset, "next run") as note:
        return note


# (when, call, name pattern, which set survives)
KILL_POINTS = {
    "while staging": ("before", "replace", r"^preview\.png\.staged-", "old"),
    "before the journal": ("before", "replace", r"^\.publish\.json$", "old"),
    "after the journal": ("after", "replace", r"^\.publish\.json$", "new"),
    "after images.npy": ("after", "replace", r"^images\.npy$", "new"),
    "after index.parquet": ("after", "replace", r"^index\.parquet$", "new"),
    "after run.json": ("after", "replace", r"^run\.json$", "new"),
    "before dropping the journal": ("before", "unlink", r"^\.publish\.json$", "new"),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_kill_at_any_step_leaves_the_old_or_the_new_set(sets: Sets, point: str):
    when, op, pattern, survivor = KILL_POINTS[point]
    kill_child(sets, when, op, pattern)
    note = recover_as_next_run(sets)
    assert (note is not None) == (survivor == "new"), note
    assert_set(sets, sets.old if survivor == "old" else sets.new)
    summaries = run(sets.csv, sets.root, sets.out)
    assert not any(s["computed"] for s in summaries)
    assert_set(sets, sets.new)


def test_a_reader_finishes_an_interrupted_publish(sets: Sets):
    kill_child(sets, "after", "replace", r"^images\.npy$")
    assert (sets.out / ".publish.json").exists()
    verify_output(str(sets.out))
    assert_set(sets, sets.new)


def staged(out: Path, final: str) -> Path:
    (name,) = [n for n in os.listdir(out) if n.startswith(final + ".staged-")]
    return out / name


@pytest.mark.parametrize("lost", ["images.npy", "index.parquet"])
def test_a_lost_staged_file_before_any_rename_keeps_the_old_set(sets: Sets, lost: str):
    kill_child(sets, "after", "replace", r"^\.publish\.json$")
    staged(sets.out, lost).unlink()  # the old file at the final name has the same size
    assert "old outputs kept" in recover_as_next_run(sets)
    assert_set(sets, sets.old)


def test_a_lost_staged_file_after_a_rename_removes_the_outputs_not_the_shards(sets: Sets):
    kill_child(sets, "after", "replace", r"^images\.npy$")
    staged(sets.out, "index.parquet").unlink()
    assert "outputs removed, shards kept" in recover_as_next_run(sets)
    names = os.listdir(sets.out)
    assert not {"images.npy", "index.parquet", "preview.png", "run.json"} & set(names)
    assert all(os.path.exists(shard_paths(str(sets.out), p).done) for p in range(3))
    summaries = run(sets.csv, sets.root, sets.out)
    assert not any(s["computed"] for s in summaries)
    assert_set(sets, sets.new)
