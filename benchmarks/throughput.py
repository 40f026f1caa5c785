"""Decode throughput on one corpus, in one run: the notebook baseline, a decode-only ceiling,
and the imgbatch core on threads and on processes for 1..all workers.

    .venv/bin/python -m benchmarks.throughput [--n 600] [--workers 1,2]

The corpus is real photos (scikit-image's wheel) re-encoded at 300-1500 px by
imgbatch.sampledata.samples (mostly JPEG, a third of them progressive; some RGBA PNG). Each
row runs in a fresh child process on the same files, read into memory before timing, and reports:
images/s (wall), images per CPU-second (child and its pool workers), PSNR of its 64x64
output against the full-resolution Lanczos reference (benchmarks.reference), peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from benchmarks import report
from imgbatch.compute import parallel
from imgbatch.sampledata import samples

CHILD = r"""
import io, json, sys, time
import numpy as np, psutil
from PIL import Image
from benchmarks.reference import notebook as notebook_file, psnr, reference
from imgbatch.pixels import images
from imgbatch.compute import parallel
from imgbatch.compute.partition import standardize_many
from imgbatch.pixels.spec import ImageSpec

method, workers, root, listing = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
paths = open(listing).read().split()
blobs = [open(f"{root}/{p}", "rb").read() for p in paths]
spec = ImageSpec()
CHUNK = 32

def notebook(b):
    return notebook_file(io.BytesIO(b))

def decode_only(b):
    img = Image.open(io.BytesIO(b))
    if img.format == "JPEG":  # the DCT scale imgbatch decodes at
        img, _ = images._draft(img, 128)
    if images._plain_png(img, b) is None:  # imgbatch's pick: pixels.png or Pillow
        img.load()

def cpu():
    me = psutil.Process()
    procs = [me] + me.children(recursive=True)
    return sum(sum(p.cpu_times()[:2]) for p in procs if p.is_running())

def peak_mb():
    me = psutil.Process()
    total = 0
    for p in [me] + me.children(recursive=True):
        with open(f"/proc/{p.pid}/status") as f:
            total += next(int(l.split()[1]) for l in f if l.startswith("VmHWM"))
    return total / 1024

outputs = None
if method == "notebook":
    run = lambda: [notebook(b) for b in blobs]
elif method == "decode-only":
    run = lambda: [decode_only(b) for b in blobs]
else:
    pool = parallel.decode_pool(method, workers)
    list(pool.map(standardize_many, [blobs[:4]] * workers, [spec] * workers))  # warm workers
    def run():
        chunks = [blobs[i:i + CHUNK] for i in range(0, len(blobs), CHUNK)]
        return [a for arr, _ in pool.map(standardize_many, chunks, [spec] * len(chunks))
                for a in arr]
c0, t0 = cpu(), time.perf_counter()
outputs = run()
wall, used = time.perf_counter() - t0, cpu() - c0
peak = peak_mb()
quality = None
if outputs is not None and outputs[0] is not None:
    quality = float(np.mean([psnr(o, reference(b, spec)) for o, b in zip(outputs[:150], blobs)]))
print(json.dumps({"rate": len(blobs) / wall, "per_cpu": len(blobs) / used, "psnr": quality,
                  "peak_mb": peak}))
parallel.shutdown()
"""


def measure(method: str, workers: int, root: str, listing: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, method, str(workers), root, listing],
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=600, help="images in the corpus")
    ap.add_argument("--workers", default=None, help="worker counts, e.g. 1,2 (default 1..cores)")
    args = ap.parse_args()
    cores = parallel.default_workers()
    counts = [int(w) for w in args.workers.split(",")] if args.workers else range(1, cores + 1)

    with tempfile.TemporaryDirectory() as tmp:
        paths = samples.write_tree(tmp, args.n, seed=1)
        listing = os.path.join(tmp, "paths.txt")
        with open(listing, "w") as f:
            f.write("\n".join(paths))
        mb = sum(os.path.getsize(os.path.join(tmp, p)) for p in paths) / 1e6
        jpeg = sum(p.endswith(".jpg") for p in paths)
        rows = [
            ("notebook baseline", 1, measure("notebook", 1, tmp, listing)),
            ("decode-only ceiling", 1, measure("decode-only", 1, tmp, listing)),
        ]
        for kind in ("threads", "processes"):
            rows += [(f"imgbatch {kind}", w, measure(kind, w, tmp, listing)) for w in counts]

    print(
        f"corpus: {args.n} images, {mb:.0f} MB, {jpeg} JPEG + {args.n - jpeg} PNG; "
        f"machine: {cores} cores\n"
    )
    base = rows[0][2]
    ceiling = rows[1][2]
    one = {name: r["rate"] for name, w, r in rows if w == 1}
    print(
        "| method | workers | img/s | x baseline | x 1 worker | img per CPU-s | "
        "per CPU-s / ceiling | PSNR dB | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, w, r in rows:
        quality = f"{r['psnr']:.1f}" if r["psnr"] is not None else "-"
        print(
            f"| {name} | {w} | {r['rate']:.0f} | {r['rate'] / base['rate']:.2f} | "
            f"{r['rate'] / one[name]:.2f} | {r['per_cpu']:.0f} | "
            f"{r['per_cpu'] / ceiling['per_cpu']:.0%} | {quality} | {r['peak_mb']:.0f} |"
        )


if __name__ == "__main__":
    report.run(main)
