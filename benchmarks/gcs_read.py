"""Reading images from gs://: partition throughput, CPU per GET, and the GET rate at scale.

    .venv/bin/python -m benchmarks.gcs_read [--n 1500] [--workers 2] [--latency 0.04]

Starts fake-gcs-server and, in front of it, the tests' FaultProxy holding every object GET
`--latency` seconds (GCS small-object latency is ~40 ms), uploads `--n` real photos made by
imgbatch.sampledata.samples (mostly JPEG, 300-800 px), and prints markdown tables:

1. partition throughput (a run of imgbatch.pipeline, its partitions timed) from local disk,
   from gs:// straight to the emulator, through the proxy without latency (the proxy's own
   cost) and with it, decoding on threads (reads on I/O threads) and on processes (reads in
   fetch processes);
   they run in turn `--rounds` times and the best of each is kept, since the machine may be
   shared. CPU per image is split into imgbatch's (this process and its pools) and the
   rig's (emulator and proxies);
2. CPU seconds per GET of this process (time.process_time / GETs, 16 threads, straight to
   the emulator) for the old read path (Blob.download_as_bytes, crc32c-checked) and the new
   one (GCSStorage.read: a kept-alive http.client connection per thread, crc32c-checked);
3. GETs/s through the proxy with decoding disabled, for the readers chosen for 2 and for 16
   decode workers (threads, and processes: fetch processes), with the latency and without
   it (what the client, the Python proxy and the emulator sharing this machine's cores can
   do at all), next to the model min(threads / latency, processes / CPU per GET) and the
   rate 16 decode processes need.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psutil

from benchmarks import report
from imgbatch.acquire.upload import sync_tree
from imgbatch.compute import parallel
from imgbatch.compute.reading import IMAGES_PER_CHUNK, Reader
from imgbatch.params import PreprocessParams
from imgbatch.pipeline import preprocess_run, run_here
from imgbatch.sampledata import samples
from imgbatch.storage.base import open_storage
from imgbatch.storage.gcs_client import RetryPolicy, gs_url, make_client
from tests.helpers.gcs import MEDIA, Emulator, direct_client

BUCKET = "bench"
DECODERS_AT_SCALE = 16
DECODE_RATE_AT_SCALE = 2900  # images/s of 16 decode processes on a 16-core machine, as the
# project's design measured it (docs/decisions/threads-then-processes.md)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The proxy runs in its own process, so its Python work does not take this process's GIL.
# Each line on its stdin asks for the requests and body bytes it forwarded since the last.
PROXY = r"""
import json, sys
from tests.helpers.gcs import FaultProxy, Latency
proxy = FaultProxy(sys.argv[1])
if float(sys.argv[2]):
    proxy.set_latency(Latency(float(sys.argv[2]), method=sys.argv[3], path=sys.argv[4]))
print(proxy.url, flush=True)
for _ in sys.stdin:
    print(json.dumps(proxy.totals(clear=True)), flush=True)
"""


class ProxyProcess:
    """The tests' FaultProxy in front of `upstream`, holding each request that matches
    `method` and `path` (default: object GETs) `latency` s."""

    def __init__(
        self, upstream: str, latency: float, method: str = "GET", path: str = MEDIA
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PROXY, upstream, str(latency), method, path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            raise RuntimeError("the latency proxy did not start")

    def totals(self) -> dict[str, int]:
        """Requests and body bytes (sent, received) through the proxy since the last call."""
        self.proc.stdin.write("totals\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        self.proc.stdin.close()  # the child exits at end of input
        self.proc.wait(10)


def partition_rate(
    source: Source, csv: str, out: str, workers: int, partition_size: int, rig: list[int]
) -> tuple[float, float, float]:
    """(images/s, CPU ms per image here, CPU ms per image in the `rig` processes)."""
    os.environ["STORAGE_EMULATOR_HOST"] = source.host
    params = PreprocessParams(
        csv=csv,
        images=source.root,
        out=out,
        partition_size=partition_size,
        executor=source.executor,
        workers=workers,
    )
    with preprocess_run(params, "benchmarks.gcs_read") as run:
        c0, r0, t0 = own_cpu(rig), rig_cpu(rig), time.perf_counter()
        computed, failures = run_here(run)
        wall, n = time.perf_counter() - t0, run.plan.n_rows
        c1, r1 = own_cpu(rig), rig_cpu(rig)
        run.finish(lambda _: (computed, failures))
    if failures:
        raise RuntimeError(f"partitions failed: {failures}")
    return n / wall, (c1 - c0) * 1e3 / n, (r1 - r0) * 1e3 / n


def rig_cpu(pids: list[int]) -> float:
    """CPU seconds used so far by the emulator and proxy processes."""
    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


def own_cpu(rig: list[int]) -> float:
    """CPU seconds used so far by this process and its pool processes (not the rig's)."""
    me = psutil.Process()
    procs = [me] + [p for p in me.children(recursive=True) if p.pid not in rig]
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += sum(p.cpu_times()[:2])
    return total


def get_cost(read: Callable[[str], bytes], paths: list[str], threads: int) -> tuple[float, float]:
    """(CPU seconds of this process per GET, GETs per second) for `read` on `threads`."""
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(read, paths[: threads * 2]))  # connections open, clients made
        c0, t0 = time.process_time(), time.perf_counter()
        sizes = list(pool.map(lambda p: len(read(p)), paths))
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    assert all(sizes), "an empty read"
    return cpu / len(paths), len(paths) / wall


def old_read(prefix: str) -> Callable[[str], bytes]:
    """The read path before this change: a Blob and a crc32c-checked download per object."""
    policy = RetryPolicy()
    bucket = make_client(16).bucket(BUCKET)

    def read(path: str) -> bytes:
        return bucket.blob(f"{prefix}/{path}").download_as_bytes(
            checksum="crc32c", retry=policy.client_retry(), timeout=policy.timeout
        )

    return read


def fetch_rate(root: str, paths: list[str], reader: Reader) -> float:
    """GETs/s through `reader`, every chunk submitted at once, no decoding."""
    storage = open_storage(root)
    chunks = [paths[i : i + IMAGES_PER_CHUNK] for i in range(0, len(paths), IMAGES_PER_CHUNK)]
    for futures in [
        reader.submit(storage, c) for c in chunks[: 2 * reader.threads // IMAGES_PER_CHUNK]
    ]:
        reader.collect(futures)  # every process up, every connection open
    t0 = time.perf_counter()
    for futures in [reader.submit(storage, c) for c in chunks]:
        reader.collect(futures)
    return len(paths) / (time.perf_counter() - t0)


@dataclass(frozen=True)
class Source:
    name: str
    root: str
    host: str  # STORAGE_EMULATOR_HOST: the emulator itself or the latency proxy
    executor: str = "threads"


def throughput_table(env: Bench, args: argparse.Namespace) -> None:
    """Each source in turn, `rounds` times; the best of each (the machine may be shared)."""
    w, ms = args.workers, f"{args.latency * 1000:.0f} ms"
    sources = [
        Source("local disk", env.images, env.emulator.url),
        Source("gs:// direct", env.url, env.emulator.url),
        Source("gs:// through the proxy, 0 ms", env.url, env.plain_proxy.url),
        Source(f"gs:// + {ms} per GET", env.url, env.proxy.url),
        Source(f"gs:// + {ms} per GET", env.url, env.proxy.url, "processes"),
    ]
    best = [(0.0, 0.0, 0.0)] * len(sources)
    for r in range(args.rounds):
        for i, src in enumerate(sources):
            out = os.path.join(env.tmp, f"out-{r}-{i}")
            best[i] = max(
                best[i], partition_rate(src, env.csv, out, w, args.partition_size, env.rig_pids())
            )
    print(
        f"\n| source | decode ({w} workers) | reads on | img/s | vs local disk | "
        "CPU ms/image, imgbatch | CPU ms/image, emulator + proxy |"
    )
    print("|---|---|---|---|---|---|---|")
    for src, (rate, own, rig) in zip(sources, best, strict=True):
        print(
            f"| {src.name} | {src.executor} | {reads_on(src, w)} | {rate:.0f} | "
            f"{rate / best[0][0]:.0%} | {own:.2f} | {rig:.2f} |"
        )


def reads_on(src: Source, workers: int) -> str:
    reader = Reader.for_decoders(src.executor, open_storage(src.root).remote, workers)
    if reader.processes:
        return (
            f"{reader.processes} fetch process(es) x {reader.threads // reader.processes} threads"
        )
    return f"{reader.threads} threads"


def cost_table(env: Bench) -> float:
    os.environ["STORAGE_EMULATOR_HOST"] = env.emulator.url
    new = open_storage(env.url)
    new.identities(env.paths)  # the listing, so reads are checked against it
    print("\n| read path (16 threads, straight to the emulator) | CPU ms per GET | GETs/s |")
    print("|---|---|---|")
    costs = {}
    for name, read in (
        ("old: Blob.download_as_bytes(checksum='crc32c')", old_read("imgs")),
        ("new: GCSStorage.read (http.client per thread + crc32c vs listing)", new.read),
    ):
        costs[name], rate = get_cost(read, env.paths, 16)
        print(f"| {name} | {costs[name] * 1000:.2f} | {rate:.0f} |")
    return min(costs.values())


def scale_table(env: Bench, latency: float, cpu_per_get: float) -> None:
    """GETs/s with no decoding, for the readers chosen for 2 and for 16 decode workers."""
    ms = f"{latency * 1000:.0f} ms"
    print(
        f"\n| decode workers | reads on | GETs/s at {ms} | GETs/s at 0 ms (this rig's CPU "
        f"ceiling) | model: min(threads/{ms}, processes/CPU per GET) | needed (2,900/s for 16) |"
    )
    print("|---|---|---|---|---|---|")
    for kind, workers in (
        ("threads", 2),
        ("threads", DECODERS_AT_SCALE),
        ("processes", DECODERS_AT_SCALE),
    ):
        reader = Reader.for_decoders(kind, True, workers)
        os.environ["STORAGE_EMULATOR_HOST"] = env.proxy.url
        rate = fetch_rate(env.url, env.paths, reader)
        os.environ["STORAGE_EMULATOR_HOST"] = env.plain_proxy.url
        ceiling = fetch_rate(env.url, env.paths, reader)
        model = min(reader.threads / latency, max(reader.processes, 1) / cpu_per_get)
        need = DECODE_RATE_AT_SCALE * workers / DECODERS_AT_SCALE
        where = reads_on(Source("", env.url, "", kind), workers)
        print(
            f"| {workers} ({kind}) | {where} | {rate:.0f} | {ceiling:.0f} | {model:.0f} | "
            f"{need:.0f} |"
        )


class Bench:
    """The emulator, the latency proxy and the corpus on disk and in the bucket."""

    def __init__(self, tmp: str, n: int, latency: float) -> None:
        self.tmp, self.images = tmp, os.path.join(tmp, "images")
        self.paths = samples.write_tree(self.images, n, seed=7, min_side=300, max_side=800)
        self.csv = str(samples.write_csv(os.path.join(tmp, "rows.csv"), self.paths))
        self.emulator = Emulator()
        self.emulator.start()
        self.proxy = ProxyProcess(self.emulator.url, latency)
        self.plain_proxy = ProxyProcess(self.emulator.url, 0.0)
        os.environ["STORAGE_EMULATOR_HOST"] = self.emulator.url
        direct_client(self.emulator.url).create_bucket(BUCKET)
        self.url = gs_url(BUCKET, "imgs")
        sync_tree(self.images, self.url, workers=8).raise_for_failures()

    def rig_pids(self) -> list[int]:
        return [self.emulator._proc.pid, self.proxy.proc.pid, self.plain_proxy.proc.pid]

    def close(self) -> None:
        self.proxy.stop()
        self.plain_proxy.stop()
        self.emulator.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1500, help="images in the corpus")
    ap.add_argument("--workers", type=int, default=2, help="decode workers for throughput")
    ap.add_argument("--latency", type=float, default=0.04, help="seconds added to every GET")
    ap.add_argument("--partition-size", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3, help="runs of each source, best kept")
    ap.add_argument(
        "--pin",
        action="store_true",
        help="emulator and proxies on CPU 1, imgbatch on CPU 0: as if storage were remote",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.pin:
            os.sched_setaffinity(0, {1})  # the emulator and proxies started next inherit it
        env = Bench(tmp, args.n, args.latency)
        if args.pin:
            os.sched_setaffinity(0, {0})  # this thread, and every pool made from now on
        try:
            mb = sum(os.path.getsize(os.path.join(env.images, p)) for p in env.paths) / 1e6
            pinned = "; imgbatch pinned to CPU 0, emulator + proxies to CPU 1" if args.pin else ""
            print(f"corpus: {args.n} images, {mb:.0f} MB; {os.cpu_count()} cores{pinned}")
            throughput_table(env, args)
            scale_table(env, args.latency, cost_table(env))
        finally:
            env.close()
            parallel.shutdown()


if __name__ == "__main__":
    report.run(main)
