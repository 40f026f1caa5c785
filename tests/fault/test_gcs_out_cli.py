"""OUT on gs://, run as a user runs it: `imgbatch preprocess --images gs://... --out gs://...`
against the real emulator, killed mid-run with SIGKILL to its whole process group (a
preempted VM), then finished by the same command from another working directory, another
PREFECT_HOME and another TMPDIR: the machines share nothing but the bucket. Only partitions
that were not committed are computed, the committed ones are not rewritten, and images.npy is
byte-identical to a local run's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.gcs import FaultProxy, _new_bucket, crc32c_b64, direct_client
from helpers.gcs import machine as gcs_machine

from imgbatch.params import PreprocessParams
from imgbatch.pipeline import preprocess
from imgbatch.sampledata import samples

ROWS, PARTITION_SIZE = 120, 10
PARTITIONS = ROWS // PARTITION_SIZE
LEASE_SECONDS = 3  # the killed run's lock lease, so the test waits seconds, not a minute
COMMAND = [sys.executable, "-m", "imgbatch.cli.main"]


def machine(tmp: Path, name: str, emulator_url: str) -> tuple[Path, dict[str, str]]:
    """One 'machine' (helpers.gcs.machine) whose lock leases last LEASE_SECONDS."""
    return gcs_machine(tmp, name, emulator_url, IMGBATCH_LEASE_SECONDS=str(LEASE_SECONDS))


def argv(csv: str, bucket: str) -> list[str]:
    return [*COMMAND, "preprocess", "--csv", csv, "--images", f"gs://{bucket}/images",
            "--out", f"gs://{bucket}/out", "--partition-size", str(PARTITION_SIZE),
            "--workers", "1", "--executor", "threads"]  # fmt: skip


def done_records(client, bucket: str) -> dict[str, int]:
    """Committed partitions: done-record object name -> generation."""
    blobs = client.list_blobs(bucket, prefix="out/shards/")
    return {b.name: b.generation for b in blobs if b.name.endswith(".done.json")}


def test_killed_on_one_machine_finished_on_another_sharing_only_the_bucket(gcs_emulator, tmp_path):
    bucket, client = _new_bucket(gcs_emulator), direct_client(gcs_emulator.url)
    paths = samples.write_tree(tmp_path / "images", ROWS, seed=3, min_side=500, max_side=700)
    for p in paths:
        client.bucket(bucket).blob(f"images/{p}").upload_from_filename(tmp_path / "images" / p)
    csv = str(samples.write_csv(tmp_path / "rows.csv", paths))
    local = tmp_path / "local"
    preprocess(PreprocessParams(csv=csv, images=str(tmp_path / "images"), out=str(local),
                                partition_size=PARTITION_SIZE, workers=1))  # fmt: skip

    first, env = machine(tmp_path, "first", gcs_emulator.url)
    with open(first / "stderr", "wb") as err:
        proc = subprocess.Popen(argv(csv, bucket), cwd=first, env=env, stderr=err,
                                stdout=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while len(done_records(client, bucket)) < 2:
        assert proc.poll() is None, (first / "stderr").read_text()[-3000:]
        assert time.monotonic() < deadline, "no partition committed within 120 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    committed = done_records(client, bucket)
    assert 2 <= len(committed) < PARTITIONS, "killed mid-run"
    assert client.bucket(bucket).get_blob("out/images.npy") is None

    time.sleep(LEASE_SECONDS + 0.5)  # the killed run's lease runs out
    second, env = machine(tmp_path, "second", gcs_emulator.url)
    rerun = subprocess.run(argv(csv, bucket), cwd=second, env=env, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Traceback" not in rerun.stderr

    after = done_records(client, bucket)
    assert len(after) == PARTITIONS
    assert {n: after[n] for n in committed} == committed, "committed shards not rewritten"
    run = json.loads(client.bucket(bucket).blob("out/run.json").download_as_bytes())
    assert run["computed_partitions"] == PARTITIONS - len(committed)
    assert run["reused_partitions"] == len(committed)
    array = client.bucket(bucket).blob("out/images.npy").download_as_bytes()
    assert crc32c_b64(array) == run["images_crc32c"], "composed on the bucket: its crc32c"
    assert array == (local / "images.npy").read_bytes()


def test_a_store_that_stops_mid_run_fails_in_one_line_and_the_rerun_completes(
    gcs_emulator, make_dataset, tmp_path
):
    """The store goes away (its port refuses) after two partitions are committed: the run
    fails in one line, those stay committed, and the rerun, once the store is back,
    computes only the rest."""
    csv, root, _ = make_dataset(60, min_side=300, max_side=500)
    bucket, client = _new_bucket(gcs_emulator), direct_client(gcs_emulator.url)
    proxy = FaultProxy(gcs_emulator.url)
    home, env = machine(tmp_path, "m", proxy.url)
    command = [*COMMAND, "preprocess", "--csv", csv, "--images", root, "--out",
               f"gs://{bucket}/out", "--partition-size", "5", "--workers", "1",
               "--executor", "threads", "--retries", "0"]  # fmt: skip
    with open(home / "stderr", "w") as err:
        proc = subprocess.Popen(command, cwd=home, env=env, stderr=err, stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(done_records(client, bucket)) < 2:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proxy.stop()
    assert proc.wait(timeout=240) == 1
    stderr = (home / "stderr").read_text()
    assert "Traceback" not in stderr, stderr[-3000:]
    [line] = [ln for ln in stderr.splitlines() if ln.startswith("imgbatch preprocess:")]
    assert line.startswith("imgbatch preprocess: failed: ")
    # whichever noticed first: a partition's write, or the lease that could not be renewed
    assert "partitions failed" in line or "stopping, nothing more committed" in line, line
    committed = done_records(client, bucket)
    assert 2 <= len(committed) < 12

    time.sleep(LEASE_SECONDS + 0.5)  # the failed run could not release its lock: it expires
    env["STORAGE_EMULATOR_HOST"] = gcs_emulator.url  # the store is back
    rerun = subprocess.run(command, cwd=home, env=env, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = done_records(client, bucket)
    assert len(after) == 12 and {n: after[n] for n in committed} == committed
    run = json.loads(client.bucket(bucket).blob("out/run.json").download_as_bytes())
    assert run["reused_partitions"] >= len(committed) and run["rows"] == 60


def test_an_out_bucket_that_does_not_exist_is_one_line_and_exit_2(
    gcs_emulator, make_dataset, tmp_path
):
    csv, root, _ = make_dataset(2)
    home, env = machine(tmp_path, "m", gcs_emulator.url)
    missing = f"{_new_bucket(gcs_emulator)}-missing"
    got = subprocess.run(
        [*COMMAND, "preprocess", "--csv", csv, "--images", root, "--out", f"gs://{missing}/o"],
        cwd=home, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert got.returncode == 2, got.stderr
    assert "Traceback" not in got.stderr
    [line] = [ln for ln in got.stderr.splitlines() if ln.startswith("imgbatch preprocess:")]
    assert line == (
        f"imgbatch preprocess: error: out gs://{missing}/o: bucket gs://{missing} does not exist"
    )


@pytest.mark.parametrize("bad", ["gs://", "gs://Bad_Bucket!/o"])
def test_a_bad_out_url_is_refused_before_any_work(bad, make_dataset, tmp_path):
    csv, root, _ = make_dataset(1)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(home)
    got = subprocess.run([*COMMAND, "preprocess", "--csv", csv, "--images", root, "--out", bad],
                         env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert got.returncode == 2 and "Traceback" not in got.stderr, got.stderr
    assert got.stderr.startswith("imgbatch preprocess: error: ") and not home.exists()
