"""Peak memory of assembly at growing N, and `imgbatch stats` (numba) against numpy.

    .venv/bin/python -m benchmarks.memory [--sizes 10000,200000] [--dir /tmp/imgbatch-bench]

Synthetic 64x64 shards (1000 rows each) are written once per N; every measurement runs in a
fresh child process and reports its own peak RSS (VmHWM), so one does not taint another.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa

from benchmarks import report
from imgbatch.output import shards

S = 64
ROWS_PER_SHARD = 1000

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
kind, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "assemble":
    from imgbatch.output.assemble import assemble
    from imgbatch.plan.run_plan import PartitionPlan
    from imgbatch.pixels.spec import ImageSpec
    starts = range(0, n, 1000)
    parts = [PartitionPlan(i, s, min(s + 1000, n), f"fp{i}") for i, s in enumerate(starts)]
    t0 = time.perf_counter()
    assemble(out, parts, n, ImageSpec(), {})
    result = None
elif kind in ("numba", "numba-first"):
    from imgbatch.output.stats import channel_stats
    t0 = time.perf_counter()
    result = channel_stats(out).mean
elif kind == "numpy-int64":
    import numpy as np
    a = np.load(out + "/images.npy", mmap_mode="r").reshape(-1, 3)
    t0 = time.perf_counter()
    s = np.zeros(3, np.int64); q = np.zeros(3, np.int64)
    for i in range(0, len(a), 1 << 22):
        b = a[i:i + (1 << 22)].astype(np.int64)
        s += b.sum(0); q += (b * b).sum(0)
    result = (s / len(a)).tolist()
elif kind == "numpy-float32":
    import numpy as np
    a = np.load(out + "/images.npy", mmap_mode="r").reshape(-1, 3)
    t0 = time.perf_counter()
    result = a.mean(axis=0, dtype=np.float32).tolist()
seconds = time.perf_counter() - t0
# VmHWM (this process's own peak RSS): ru_maxrss would carry the parent's over exec
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, "mean": result}))
"""


def make_shards(out: str, n: int) -> None:
    """n rows of synthetic images as committed shards (fingerprints fp0, fp1, ...)."""
    for i, start in enumerate(range(0, n, ROWS_PER_SHARD)):
        stop = min(start + ROWS_PER_SHARD, n)
        rows = np.arange(start, stop)
        images = (rows[:, None, None, None] * 7 + np.arange(S * S * 3).reshape(S, S, 3)) % 251
        index = pa.table(
            {
                "row": rows,
                "image_path": [f"img/{r}.jpg" for r in rows],
                "status": ["ok"] * len(rows),
                "error": [""] * len(rows),
                "width": np.full(len(rows), S, np.int32),
                "height": np.full(len(rows), S, np.int32),
                "partition": np.full(len(rows), i, np.int32),
            }
        )
        shards.write_shard(out, i, f"fp{i}", images.astype(np.uint8), index)


def child(kind: str, out: str, n: int) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": os.path.join(out, "numba-cache")}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, kind, out, str(n)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="10000,200000")
    ap.add_argument("--dir", default="/tmp/imgbatch-bench")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    assembly, stats = [], []
    for n in sizes:
        out = os.path.join(args.dir, f"n{n}")
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        make_shards(out, n)
        print(f"N={n}: shards written in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        assembly.append((n, child("assemble", out, n)))
        if n == sizes[-1]:
            for kind in ("numba-first", "numba", "numpy-int64", "numpy-float32"):
                stats.append((kind, child(kind, out, n)))
        if n != sizes[-1]:
            shutil.rmtree(out)

    base = assembly[0][1]["peak_rss_mb"]
    print("| N | images.npy MB | assemble s | peak RSS MB | x smallest N |")
    print("|---|---|---|---|---|")
    for n, r in assembly:
        mb = n * S * S * 3 / 1e6
        print(
            f"| {n} | {mb:.0f} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | "
            f"{r['peak_rss_mb'] / base:.2f} |"
        )
    print(f"\nchannel mean of N={sizes[-1]} (exact answer from int64 sums):\n")
    print("| method | seconds | peak RSS MB | mean R | exact |")
    print("|---|---|---|---|---|")
    exact = stats[2][1]["mean"][0]
    for kind, r in stats:
        label = {
            "numba-first": "numba, first call (compile, cache=True)",
            "numba": "numba, cached",
            "numpy-int64": "numpy, int64 blocks",
            "numpy-float32": "numpy, float32 .mean()",
        }[kind]
        m = r["mean"][0]
        print(
            f"| {label} | {r['seconds']:.2f} | {r['peak_rss_mb']:.0f} | {m:.4f} | "
            f"{'yes' if abs(m - exact) < 1e-6 else 'no'} |"
        )
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    report.run(main)
