"""OUT on gs://: the partition phase next to a local OUT, and images.npy composed on the
bucket next to a local assembly.

    .venv/bin/python -m benchmarks.gcs_out [--n 4000] [--workers 2] [--latency 0.04] [--rows 50000]

Starts fake-gcs-server and, in front of it, the tests' FaultProxy in its own process, holding
every request (any method, any path) `--latency` seconds, as the round trip to real GCS would,
and counting the body bytes it forwards each way. Prints markdown tables:

1. the partition phase (every partition computed and committed, no assembly) of `--n` real
   photos read from local disk, with OUT a local folder and with OUT gs:// through the proxy,
   `--workers` decode workers; partitions run in turn (imgbatch.pipeline.run_here, as from a
   notebook) and 8 at a time on threads (as the flow's ThreadPoolTaskRunner runs them). Each
   configuration runs `--rounds` times, in turn, and the best is kept: the machine may be shared;
2. assembly of `--rows` synthetic 64x64 rows, committed as shards of 1000 rows
   (written straight to the emulator, not timed): images.npy, index.parquet and preview.png
   published on gs:// through the proxy (compose) and in a local folder, each in a fresh child
   process: its wall time, its peak RSS, and the bytes that crossed this machine (the proxy's
   count of request and response bodies) next to the array's size.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks import report, scratch
from benchmarks.gcs_read import ProxyProcess
from benchmarks.memory import ROWS_PER_SHARD, make_shards
from imgbatch.compute import parallel
from imgbatch.compute.partition import run_partition
from imgbatch.params import PreprocessParams
from imgbatch.pipeline import PreprocessRun, preprocess_run, run_here
from imgbatch.sampledata import samples
from imgbatch.storage.gcs_client import gs_url
from tests.helpers.gcs import Emulator, direct_client

BUCKET = "bench"
IN_FLIGHT = 8  # partitions the flow's ThreadPoolTaskRunner runs at once
SIZE = 64

CHILD = r"""
import json, sys, time
from imgbatch.output.assemble import assemble
from imgbatch.pixels.spec import ImageSpec
from imgbatch.plan.run_plan import PartitionPlan
out, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
starts = range(0, n, size)
parts = [PartitionPlan(i, s, min(s + size, n), f"fp{i}") for i, s in enumerate(starts)]
t0 = time.perf_counter()
run = assemble(out, parts, n, ImageSpec(), {})
seconds = time.perf_counter() - t0
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, "run": run}))
"""


def in_flight(run: PreprocessRun) -> tuple[list[dict], dict[int, str]]:
    """The partitions 8 at a time on threads, as the flow's task runner runs them."""
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        computed = list(pool.map(lambda p: run_partition(p, run.settings), run.todo))
    return computed, {}


def partition_phase(csv: str, images: str, out: str, args, compute) -> float:
    """Wall seconds of computing and committing every partition of a fresh OUT."""
    params = PreprocessParams(
        csv=csv,
        images=images,
        out=out,
        partition_size=args.partition_size_photos,
        executor="threads",
        workers=args.workers,
    )
    with preprocess_run(params, "benchmarks.gcs_out") as run:
        t0 = time.perf_counter()
        computed, failures = compute(run)
        seconds = time.perf_counter() - t0
    if failures or len(computed) != len(run.plan.partitions):
        raise RuntimeError(f"partitions failed: {failures}")
    return seconds


def partition_table(tmp: str, proxy: ProxyProcess, args) -> None:
    images = os.path.join(tmp, "photos")
    paths = samples.write_tree(images, args.n, seed=7, min_side=300, max_side=800)
    csv = str(samples.write_csv(os.path.join(tmp, "photos.csv"), paths))
    runners = (("in turn", run_here), (f"{IN_FLIGHT} at a time", in_flight))
    best: dict[tuple[str, str], float] = {}
    requests: dict[tuple[str, str], int] = {}
    fresh = itertools.count()  # a new OUT for every run: nothing done yet
    for _ in range(args.rounds):
        for how, compute in runners:
            for where in ("local", "gs://"):
                name = f"partitions-{next(fresh)}"
                out = gs_url(BUCKET, name) if where == "gs://" else os.path.join(tmp, name)
                proxy.totals()
                seconds = partition_phase(csv, images, out, args, compute)
                requests[how, where] = proxy.totals()["requests"]
                best[how, where] = min(best.get((how, where), seconds), seconds)
    ms = f"{args.latency * 1000:.0f} ms"
    parts = -(-args.n // args.partition_size_photos)
    print(
        f"\n{args.n} photos from local disk, {parts} partitions of {args.partition_size_photos}, "
        f"{args.workers} decode workers (threads); best of {args.rounds}"
    )
    print(f"\n| partitions run | OUT | partition phase, s | vs local | requests (+{ms} each) |")
    print("|---|---|---|---|---|")
    for how, _ in runners:
        local = best[how, "local"]
        for where in ("local", "gs://"):
            s = best[how, where]
            calls = requests[how, where] if where == "gs://" else 0
            print(f"| {how} | {where} | {s:.2f} | {s / local - 1:+.1%} | {calls} |")


def assemble_child(out: str, rows: int, size: int, host: str) -> dict:
    env = {**os.environ, "STORAGE_EMULATOR_HOST": host}
    got = subprocess.run(
        [sys.executable, "-c", CHILD, out, str(rows), str(size)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    return json.loads(got.stdout.strip().splitlines()[-1])


def assembly_table(tmp: str, emulator: Emulator, proxy: ProxyProcess, args) -> None:
    rows, size = args.rows, ROWS_PER_SHARD
    local_out, remote_out = os.path.join(tmp, "assemble"), gs_url(BUCKET, "assemble")
    os.environ["STORAGE_EMULATOR_HOST"] = emulator.url  # the shards go straight in: not timed
    make_shards(local_out, rows)
    make_shards(remote_out, rows)
    array = rows * SIZE * SIZE * 3
    local = assemble_child(local_out, rows, size, emulator.url)
    proxy.totals()
    remote = assemble_child(remote_out, rows, size, proxy.url)
    moved = proxy.totals()
    through = moved["sent"] + moved["received"]
    same = remote["run"]["shape"] == local["run"]["shape"]
    ms = f"{args.latency * 1000:.0f} ms"
    print(
        f"\n{rows} rows of {SIZE}x{SIZE}x3 (images.npy {array / 1e6:.0f} MB), "
        f"{-(-rows // size)} shards of {size} rows; same shape both ways: {same}"
    )
    print(
        "\n| OUT | assembly, s | peak RSS, MB | requests | bytes through this machine | "
        "of the array |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| local folder (streamed) | {local['seconds']:.2f} | {local['peak_rss_mb']:.0f} | - | "
        f"{2 * array / 1e6:.0f} MB (read + written, local disk) | 200% |"
    )
    print(
        f"| gs:// + {ms} per request (compose) | {remote['seconds']:.2f} | "
        f"{remote['peak_rss_mb']:.0f} | {moved['requests']} | {through / 1e6:.2f} MB "
        f"(sent {moved['sent'] / 1e6:.2f}, received {moved['received'] / 1e6:.2f}) | "
        f"{through / array:.2%} |"
    )
    run = remote["run"]
    print(f"\ngs:// run.json: images_crc32c {run.get('images_crc32c')}, ", end="")
    print(f"images_sha256 {run.get('images_sha256', 'not recorded (composed)')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=4000, help="photos for the partition phase")
    ap.add_argument("--partition-size-photos", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2, help="decode workers")
    ap.add_argument("--latency", type=float, default=0.04, help="seconds added to every request")
    ap.add_argument("--rows", type=int, default=50000, help="rows assembled")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each configuration, best kept")
    ap.add_argument("--dir", help="work folder (default: a temporary one)")
    args = ap.parse_args()
    with scratch(args.dir) as tmp:
        emulator = Emulator()
        emulator.start()
        proxy = ProxyProcess(emulator.url, args.latency, method=".*", path="")
        try:
            direct_client(emulator.url).create_bucket(BUCKET)
            os.environ["STORAGE_EMULATOR_HOST"] = proxy.url
            print(f"{os.cpu_count()} cores; every GCS request held {args.latency * 1000:.0f} ms")
            partition_table(tmp, proxy, args)
            assembly_table(tmp, emulator, proxy, args)
        finally:
            proxy.stop()
            emulator.stop()
            parallel.shutdown()


if __name__ == "__main__":
    report.run(main)
