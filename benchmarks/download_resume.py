"""A large archive over a link that drops three times arrives verified, with no Prefect retry.

    .venv/bin/python -m benchmarks.download_resume [--size-mb 1024] [--cuts 3] [--via flow|core]

Writes a file of random bytes (named .bin: an archive's name would have it checked as a tar
archive, which random bytes are not), serves it on 127.0.0.1 with the test suite's fault server
(connection dropped mid-body at evenly spaced offsets, once each), and downloads it with the
download-archives flow with Prefect retries set to 0 (`--via core` calls the wget runner
directly instead). wget resumes each cut with a Range request inside one run; the table shows
the HTTP statuses, the bytes the server had to send and the sha256 check.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from benchmarks import report
from imgbatch.acquire.download import WgetOptions, download
from imgbatch.params import DownloadParams
from tests.helpers.http_server import serve

WAITRETRY = 1.0


def make_file(path: Path, size: int) -> str:
    """Random bytes (so nothing compresses or dedups); returns their sha256."""
    digest = hashlib.sha256()
    rng = np.random.default_rng(0)
    with path.open("wb") as f:
        left = size
        while left:
            block = rng.bytes(min(left, 16 << 20))
            digest.update(block)
            f.write(block)
            left -= len(block)
    return digest.hexdigest()


def run(size_mb: int, cuts: int, via: str, workdir: Path) -> list[tuple[str, str]]:
    size = size_mb << 20
    src, dest = workdir / "archive.bin", workdir / "dest"
    t0 = time.perf_counter()
    expected = make_file(src, size)
    t_make = time.perf_counter() - t0
    offsets = [size * (i + 1) // (cuts + 1) for i in range(cuts)]
    with serve() as srv:
        srv.add("archive.bin", file=src, cut_at=list(offsets))
        url = srv.url("archive.bin")
        tries = cuts + 2
        t0 = time.perf_counter()
        if via == "flow":
            from imgbatch.flows.download import download_archives

            params = DownloadParams(
                urls=[url],
                dest=str(dest),
                sha256=[expected],
                tries=tries,
                waitretry=WAITRETRY,
                retries=0,
            )
            got = download_archives(params)[0]
        else:
            options = WgetOptions(tries=tries, waitretry=WAITRETRY)
            got = asdict(download(url, dest, sha256=expected, options=options))
        seconds = time.perf_counter() - t0
        gets = srv.gets("archive.bin")
        sent = srv.bytes_sent
    ok = got["sha256"] == expected and got["size"] == size
    return [
        ("file", f"{size:,} bytes of random data (made in {t_make:.1f} s)"),
        ("connection cut at", ", ".join(f"{o:,}" for o in offsets)),
        (
            "run through",
            "download-archives flow, Prefect retries=0"
            if via == "flow"
            else "imgbatch.acquire.download.download (wget runner, no Prefect)",
        ),
        ("wget settings", f"--tries={tries} --waitretry={WAITRETRY:g} (default read timeout)"),
        ("wget runs", str(got["wget_runs"])),
        ("HTTP requests", ", ".join(f"{r.status} {r.range or 'full'}" for r in gets)),
        ("bytes sent by server", f"{sent:,} ({sent / size:.3f} x the file)"),
        ("sha256 verified", f"{'yes' if ok else 'NO'} ({got['sha256'][:16]}...)"),
        (
            "wall time",
            f"{seconds:.1f} s ({size / seconds / 1e6:,.0f} MB/s incl. verify"
            + (" and Prefect start-up)" if via == "flow" else ")"),
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--cuts", type=int, default=3)
    ap.add_argument("--via", choices=("flow", "core"), default="flow")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temp folder")
    args = ap.parse_args()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        rows = run(args.size_mb, args.cuts, args.via, Path(tmp))
    print("| measured | value |\n|---|---|")
    for key, value in rows:
        print(f"| {key} | {value} |")


if __name__ == "__main__":
    report.run(main)
