"""Upload speed and no-op rerun cost: imgbatch's sync_tree vs gsutil, same emulator, one run.

    .venv/bin/python -m benchmarks.upload [--files 1000] [--workers 8] [--seed 0]

Writes a corpus of real photos (imgbatch.sampledata.samples, JPEG and PNG, 200-600 px) into a temp
folder, starts fake-gcs-server (memory backend) on 127.0.0.1, then times, on that one
emulator: our upload (core sync_tree, no Prefect) vs `gsutil -m cp -r`, each into its own
prefix of one bucket; then a rerun with nothing to do, ours (one listing + local crc32c) vs
`gsutil -m cp -n -r` (one metadata request per object). Needs gsutil on PATH.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import report
from imgbatch.acquire.upload import sync_tree
from imgbatch.sampledata.samples import varied_image
from imgbatch.storage.gcs_client import gs_url
from tests.helpers.gcs import Emulator, Gsutil, direct_client

BUCKET = "bench"


def write_corpus(root: Path, n: int, seed: int) -> int:
    """n photo files in 10 sub-folders; returns their total size in bytes."""
    rng = random.Random(seed)
    total = 0
    for i in range(n):
        data, ext = varied_image(rng, min_side=200, max_side=600)
        path = root / f"d{i % 10}" / f"img_{i:06d}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        total += len(data)
    return total


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1000, help="number of files (default 1000)")
    ap.add_argument("--workers", type=int, default=8, help="our upload threads (default 8)")
    ap.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    args = ap.parse_args(argv)
    exe = shutil.which("gsutil")
    if exe is None:
        print("gsutil is not on PATH: nothing to compare against", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="imgbatch-upload-bench-") as tmp:
        root = Path(tmp) / "corpus"
        gen_s, total = timed(lambda: write_corpus(root, args.files, args.seed))
        emulator = Emulator()
        emulator.start()
        try:
            direct_client(emulator.url).create_bucket(BUCKET)
            os.environ["STORAGE_EMULATOR_HOST"] = emulator.url
            gsutil = Gsutil.for_emulator(exe, emulator, Path(tmp) / "gsutil")
            sources = sorted(str(p) for p in root.iterdir())
            theirs = gs_url(BUCKET, "gsutil") + "/"
            ours = gs_url(BUCKET, "ours")

            up_s, report = timed(lambda: sync_tree(root, ours, workers=args.workers))
            assert report.ok and len(report.uploaded) == args.files, report.summary()
            g_up_s, _ = timed(lambda: gsutil("-m", "cp", "-r", *sources, theirs))
            noop_s, again = timed(lambda: sync_tree(root, ours, workers=args.workers))
            assert again.uploaded == [] and len(again.skipped) == args.files, again.summary()
            g_noop_s, _ = timed(lambda: gsutil("-m", "cp", "-n", "-r", *sources, theirs))
            assert len(gsutil.ls_recursive(theirs)) == args.files
        finally:
            emulator.stop()

    mb = total / 1e6
    print(
        f"corpus: {args.files} files, {mb:.1f} MB (written in {gen_s:.1f} s); "
        f"fake-gcs-server memory backend on 127.0.0.1; {os.cpu_count()} cores\n"
    )
    rows = [
        (f"imgbatch sync_tree, {args.workers} threads", up_s, args.files / up_s, mb / up_s),
        ("gsutil -m cp -r", g_up_s, args.files / g_up_s, mb / g_up_s),
    ]
    print("| first upload | seconds | files/s | MB/s |")
    print("|---|---:|---:|---:|")
    for name, s, fps, mbps in rows:
        print(f"| {name} | {s:.2f} | {fps:.0f} | {mbps:.1f} |")
    print("\n| no-op rerun (everything already there) | seconds |")
    print("|---|---:|")
    print(f"| imgbatch sync_tree (1 listing + local crc32c) | {noop_s:.2f} |")
    print(f"| gsutil -m cp -n -r | {g_noop_s:.2f} |")
    print(
        f"\nno-op rerun: imgbatch is {g_noop_s / noop_s:.0f}x faster; "
        f"first upload: {g_up_s / up_s:.1f}x gsutil's speed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(report.run(main))
