"""Ctrl-C during a run, as a terminal sends it (SIGINT to the command's process group) while
partitions are in flight: the command ends within seconds with one line and exit 130, the
partitions it committed stay, and a rerun completes to the same bytes as a clean run."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

COMMAND = [sys.executable, "-m", "imgbatch.cli.main"]
INTERRUPTED_LINE = (
    "imgbatch preprocess: interrupted; rerun the same command to pick up where it stopped"
)
# From the signal to the command's exit; the partitions in flight would take longer.
BOUND_SECONDS = 3.0


# 301 rows in partitions of 100: the last one (a single row) commits first, at once, while
# the others, all in flight, still have about 300 large images (seconds of work) to decode.
ROWS, PARTITION_SIZE = 301, 100
PARTITIONS = 4


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def large_images(tmp_path_factory) -> tuple[str, str, str]:
    """(CSV, images root, sha256 of a clean run's images.npy), made once for both executors;
    the clean run is the core's own (imgbatch.pipeline.preprocess, no Prefect)."""
    from imgbatch.params import PreprocessParams
    from imgbatch.pipeline import preprocess
    from imgbatch.sampledata import samples

    tmp = tmp_path_factory.mktemp("large")
    paths = samples.write_tree(tmp / "images", ROWS, seed=0, min_side=1200, max_side=1600)
    csv, root = str(samples.write_csv(tmp / "rows.csv", paths)), str(tmp / "images")
    params = PreprocessParams(csv=csv, images=root, out=str(tmp / "clean"), size=256,
                              partition_size=PARTITION_SIZE, workers=1)  # fmt: skip
    preprocess(params)
    return csv, root, sha256(tmp / "clean" / "images.npy")


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_ctrl_c_ends_at_once_and_the_rerun_resumes(large_images, tmp_path, executor):
    csv, root, clean = large_images
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    environ["PREFECT_HOME"] = str(tmp_path / "home")

    def argv(out: Path) -> list[str]:
        return [*COMMAND, "preprocess", "--csv", csv, "--images", root, "--out", str(out),
                "--size", "256", "--partition-size", str(PARTITION_SIZE), "--workers", "1",
                "--executor", executor]  # fmt: skip

    out = tmp_path / "out"
    proc = subprocess.Popen(
        argv(out),
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    deadline = time.monotonic() + 300
    while not list((out / "shards").glob("*.done.json")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    signalled = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    seconds = time.monotonic() - signalled
    assert proc.returncode == 130, stderr
    assert seconds < BOUND_SECONDS, f"{seconds:.1f} s"
    assert stderr.rstrip().splitlines()[-1] == INTERRUPTED_LINE, stderr  # no warning after it
    assert "Traceback" not in stderr and "Crash" not in stderr and "partition-" not in stderr
    assert not stdout
    committed = {p: p.stat().st_mtime_ns for p in (out / "shards").glob("*.done.json")}
    assert 0 < len(committed) < PARTITIONS, "the partitions in flight are abandoned, not awaited"
    assert not (out / "images.npy").exists()

    rerun = subprocess.run(argv(out), env=environ, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert {p: p.stat().st_mtime_ns for p in committed} == committed, "reused, not redone"
    assert sha256(out / "images.npy") == clean
