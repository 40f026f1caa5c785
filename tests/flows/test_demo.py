"""`imgbatch demo` as a user runs it: a real subprocess, real wget, a real fake-gcs-server."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgbatch.cli.gcs_emulator import running_emulator
from imgbatch.cli.main import main
from imgbatch.output.verify import verify_output
from imgbatch.outstore.base import open_output


def emulator_processes(port: int) -> list[str]:
    """Command lines of live fake-gcs-server processes serving HTTP on `port`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"fake-gcs-server" in a for a in args[:1]) and str(port).encode() in args:
            found.append(b" ".join(args).decode(errors="replace"))
    return found


def test_demo_runs_the_whole_job_through_gcs_and_leaves_no_emulator(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    unset = ("PREFECT_API_URL", "STORAGE_EMULATOR_HOST")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "imgbatch.cli.main",
            "demo",
            "--workdir",
            str(workdir),
            "--rows",
            "60",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = workdir / "out"
    lines = proc.stdout.splitlines()
    assert f"verified output in {out}/" in lines
    assert f"contact sheet (flagged rows crossed in red): {out / 'preview.png'}" in proc.stdout
    cut = re.search(
        r"^beauty_image\.tar\.gz: connection cut at (\d+) bytes, resumed \(206\)$",
        proc.stdout,
        re.M,
    )
    assert cut, proc.stdout
    archive = workdir / "work" / "archives" / "beauty_image.tar.gz"
    assert 0 < int(cut[1]) < archive.stat().st_size
    assert archive.read_bytes() == (workdir / "served" / "beauty_image.tar.gz").read_bytes()

    result = verify_output(str(out))
    assert tuple(result["shape"]) == (60, 64, 64, 3)
    assert result["counts"] == {"corrupt": 3, "missing": 1, "ok": 56}
    images = np.load(out / "images.npy")
    assert images[:56].any(axis=(1, 2, 3)).all() and not images[56:].any()
    run = json.loads((out / "run.json").read_text())
    assert run["params"]["images"].startswith("gs://")

    port = int(re.search(r"GCS emulator .* on http://127\.0\.0\.1:(\d+)", proc.stdout)[1])
    assert emulator_processes(port) == []
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the emulator's port still answers"

    # A rerun reuses everything: no download, no upload, no partition computed again.
    stamps = sorted((p.name, p.stat().st_mtime_ns) for p in (out / "shards").glob("*.npy"))
    again = subprocess.run(proc.args, env=env, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already downloaded and verified, reused (no request sent)" in again.stdout
    assert "uploaded 0, skipped 59 already there" in again.stdout + again.stderr
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (out / "shards").glob("*.npy")) == stamps


def test_demo_refuses_too_few_rows_in_one_line_before_writing(tmp_path, capsys) -> None:
    workdir = tmp_path / "demo"
    code = main(["demo", "--workdir", str(workdir), "--rows", "3"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == "imgbatch demo: error: --rows must be at least 10, got 3"
    assert not workdir.exists()


def test_demo_out_gcs_writes_and_verifies_its_output_on_the_emulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "demo"
    env = {
        k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "STORAGE_EMULATOR_HOST")
    }
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    command = [sys.executable, "-m", "imgbatch.cli.main", "demo", "--workdir", str(workdir)]
    proc = subprocess.run([*command, "--rows", "10", "--out-gcs"], env=env, capture_output=True,
                          text=True, timeout=180)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "verified output in gs://imgbatch-demo/out/" in proc.stdout.splitlines()
    assert not (workdir / "out").exists()

    with running_emulator(workdir / "gcs") as emulator:  # the demo's objects, served again
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
        result = verify_output("gs://imgbatch-demo/out")
        images = np.load(io.BytesIO(open_output("gs://imgbatch-demo/out").read_bytes("images.npy")))
    assert result["counts"] == {"corrupt": 3, "missing": 1, "ok": 6}
    assert result["params"]["csv"] == str(workdir / "products.csv")
    assert images.shape == (10, 64, 64, 3)
    assert images[:6].any(axis=(1, 2, 3)).all() and not images[6:].any()
