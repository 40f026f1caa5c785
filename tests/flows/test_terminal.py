"""The `imgbatch` command's terminal, run as a user would (a subprocess, a fresh PREFECT_HOME,
the command's own temporary server): an expected failure is one line, printed once, with no
traceback and nothing after it; the first-use note only on first use; no link to a UI that
is not served."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

COMMAND = [sys.executable, "-m", "imgbatch.cli.main"]
# Prefect's own lines that may show while a flow runs (the run began, a task finished well).
PREFECT_INFO = " | INFO    | "
FIRST_USE = "imgbatch: starting a temporary Prefect server (first use builds its database"


def run(argv: list[str], home: Path, timeout: float = 240, **env: str):
    """(completed process, wall seconds) of `imgbatch ARGV` with PREFECT_HOME=home, no server."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    environ.update(PREFECT_HOME=str(home), **env)
    start = time.monotonic()
    proc = subprocess.run(
        [*COMMAND, *argv], capture_output=True, text=True, env=environ, timeout=timeout
    )
    return proc, time.monotonic() - start


def own_lines(stderr: str) -> list[str]:
    """stderr without Prefect's INFO lines and the first-use note: what the user is told."""
    return [ln for ln in stderr.splitlines() if PREFECT_INFO not in ln and FIRST_USE not in ln]


def assert_one_line(proc, code: int, *words: str) -> None:
    """Exit `code`, no traceback, one line of our own on stderr, last, naming `words`."""
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = own_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1] == lines[0]
    assert all(w in lines[0] for w in words), lines[0]
    assert sum(words[0] in ln for ln in proc.stderr.splitlines()) == 1, proc.stderr


def preprocess(csv: str, root: str, out: Path, *extra: str) -> list[str]:
    return ["preprocess", "--csv", csv, "--images", root, "--out", str(out), "--size", "32",
            "--partition-size", "5", *extra]  # fmt: skip


def test_first_use_note_once_no_link_and_a_damaged_shard_is_mended_in_one_run(
    make_dataset, tmp_path
):
    csv, root, _ = make_dataset(12)
    home, out = tmp_path / "home", tmp_path / "out"
    first, _ = run(preprocess(csv, root, out), home)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count(FIRST_USE) == 1 and not own_lines(first.stderr), first.stderr
    assert "View at" not in first.stderr and "EventsWorker" not in first.stderr
    array = (out / "images.npy").read_bytes()

    for name in ("images.npy", "run.json", "index.parquet", "preview.png"):
        (out / name).unlink()
    shard = out / "shards" / "part-00001.npy"
    body = bytearray(shard.read_bytes())
    body[-100] ^= 1
    shard.write_bytes(bytes(body))
    mended, seconds = run(preprocess(csv, root, out), home)
    assert mended.returncode == 0 and "Traceback" not in mended.stderr, mended.stderr
    assert mended.stderr.count("shard of partition 1 is damaged: computing it again") == 1
    assert (out / "images.npy").read_bytes() == array
    assert FIRST_USE not in mended.stderr and "View at" not in mended.stderr
    assert seconds < 60


def test_out_under_proc_is_a_bad_argument(make_dataset, tmp_path):
    csv, root, _ = make_dataset(2)
    proc, seconds = run(preprocess(csv, root, Path("/proc/imgbatch-out")), tmp_path / "home")
    assert_one_line(proc, 2, "imgbatch preprocess: error: out '/proc/imgbatch-out'")
    assert seconds < 10 and not (tmp_path / "home").exists(), "refused before Prefect starts"


def test_an_unreachable_dask_address_is_a_bad_argument_at_once(make_dataset, tmp_path):
    pytest.importorskip("prefect_dask")
    from imgbatch.cli.local_server import free_port

    csv, root, _ = make_dataset(2)
    address = f"tcp://127.0.0.1:{free_port()}"
    home = tmp_path / "home"
    proc, seconds = run(preprocess(csv, root, tmp_path / "out", "--dask-address", address), home)
    assert_one_line(proc, 2, "cannot reach the Dask scheduler", address, "connection refused")
    assert seconds < 10 and not home.exists(), "refused before Prefect starts"


# A command whose partitions meet a bug (not an imgbatch error): its traceback must show.
BUG = """
import sys
import imgbatch.tasks.preprocess
from imgbatch.cli.main import main
def bug(part, *a, **kw):
    raise ZeroDivisionError("a bug (injected)")
imgbatch.tasks.preprocess.run_partition = bug
sys.exit(main(sys.argv[1:]))
"""


def test_a_real_bug_keeps_its_traceback(make_dataset, tmp_path):
    csv, root, _ = make_dataset(4)
    argv = preprocess(csv, root, tmp_path / "out", "--retries", "0")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    proc = subprocess.run(
        [sys.executable, "-c", BUG, *argv],
        capture_output=True,
        text=True,
        env={**environ, "PREFECT_HOME": str(tmp_path / "home")},
        timeout=240,
    )
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ZeroDivisionError: a bug (injected)" in proc.stderr


@pytest.mark.parametrize("room_kib", [0, 150], ids=["no-room-for-plan", "room-for-one-shard"])
def test_a_full_disk_is_one_line(make_dataset, small_disk, tmp_path, room_kib):
    csv, root, _ = make_dataset(20)
    (small_disk / "filler").write_bytes(b"\0" * (2 * 1024 * 1024 - room_kib * 1024))
    proc, seconds = run(
        preprocess(csv, root, small_disk / "out", "--retries", "0"), tmp_path / "home"
    )
    assert_one_line(proc, 1, "imgbatch preprocess: failed:", "no space left on device")
    assert seconds < 90


def test_a_refused_or_unresolvable_download_is_one_line(tmp_path):
    from imgbatch.cli.local_server import free_port

    home = tmp_path / "home"
    for url in (f"http://127.0.0.1:{free_port()}/a.tar.gz", "http://imgbatch.invalid/a.tar.gz"):
        argv = ["download", url, "--dest", str(tmp_path / "dl"), "--tries", "1", "--retries", "0"]
        proc, seconds = run(argv, home)
        assert_one_line(proc, 1, "imgbatch download: failed:", url)
        assert seconds < 60
