"""Orchestration at scale: what Prefect adds per row and per partition, and what reruns cost.

    .venv/bin/python -m benchmarks.scale [--rows 20000] [--unique 40] [--dir D] [--port P]
    .venv/bin/python -m benchmarks.scale --rows 20000,200000     # the issue's sizes

The corpus is `--unique` small real-photo JPEGs (imgbatch.sampledata.samples, 48-96 px, so decoding
is cheap and orchestration shows) hard-linked to as many distinct paths as the largest row count
(1,000 per folder): every row is a real file and a real decode. Everything runs against one
server started with `imgbatch server start --port P` under a private PREFECT_HOME.

Tables:
1. the partition phase of the core library (imgbatch.pipeline.preprocess, partitions in turn)
   and of the flow (preprocess_images called in a fresh process), as imgbatch.pipeline logs
   it for both, wall and process CPU seconds (time.process_time: every thread, the decode
   threads' too), partitions of 1,000 rows;
2. reruns of `imgbatch preprocess` on the flow's output (a fresh process each, wall clock):
   nothing to do, then with 3 shards deleted (first, middle, last);
3. the same 50,000 rows as 50 partitions of 1,000 and as 500 of 100: the partition phase of
   both, and the cost of each extra partition, (500-partition - 50-partition) / 450.
In every row the server's CPU seconds and peak RSS (its process tree, sampled every 0.1 s
with psutil) are those of that measurement alone. Each measurement starts after os.sync(): a
200,000-row run leaves gigabytes of writeback that otherwise stall the next one's fsyncs
(and the server's database commits) for seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import threading

import psutil

from benchmarks import report, scratch
from benchmarks.e2e import Server, clean_env, core_child, partition_phase, preprocess_argv, timed

LAYOUT_ROWS = 50_000
LAYOUTS = (1000, 100)  # rows per partition: 50 partitions, then 500


def flow_child(csv: str, images: str, out: str, partition_size: str) -> None:
    """preprocess_images in this process; prints its partition phase (wall and CPU seconds)."""
    from imgbatch.flows.preprocess import preprocess_images
    from imgbatch.params import PreprocessParams

    params = PreprocessParams(csv=csv, images=images, out=out, partition_size=int(partition_size))
    with partition_phase() as phase:
        state = preprocess_images(params, return_state=True)
    if not state.is_completed():
        raise SystemExit(f"the flow run failed: {state.message}")
    print(json.dumps(phase))


class Watch:
    """CPU seconds and peak RSS of a process tree (the server) while a `with` block runs."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.cpu = self.peak_mb = 0.0
        self._stop = threading.Event()

    def _tree(self) -> list[psutil.Process]:
        return [self.root, *self.root.children(recursive=True)]

    def _sum(self, value) -> float:
        total = 0.0
        for p in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += value(p)
        return total

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            rss = self._sum(lambda p: p.memory_info().rss) / 2**20
            self.peak_mb = max(self.peak_mb, rss)

    def __enter__(self) -> Watch:
        self._cpu0 = self._sum(lambda p: sum(p.cpu_times()[:2]))
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.cpu = self._sum(lambda p: sum(p.cpu_times()[:2])) - self._cpu0


class Corpus:
    """`unique` small photos hard-linked to `rows` distinct paths, and one CSV per row count."""

    def __init__(self, base: str, unique: int, rows: int) -> None:
        from imgbatch.sampledata import samples

        self.base, self.images = base, os.path.join(base, "images")
        src = os.path.join(base, "src")
        originals = samples.write_tree(src, unique, seed=3, min_side=48, max_side=96)
        jpegs = [p for p in originals if p.endswith(".jpg")]
        self.paths = []
        for i in range(rows):
            rel = f"links/{i // 1000:04d}/{i:07d}.jpg"
            if i % 1000 == 0:
                os.makedirs(os.path.join(self.images, os.path.dirname(rel)), exist_ok=True)
            os.link(os.path.join(src, jpegs[i % len(jpegs)]), os.path.join(self.images, rel))
            self.paths.append(rel)

    def csv(self, rows: int) -> str:
        from imgbatch.sampledata import samples

        path = os.path.join(self.base, f"rows-{rows}.csv")
        if not os.path.exists(path):
            samples.write_csv(path, self.paths[:rows])
        return path


class Bench:
    """The corpus, the server, and fresh-process runs measured against the server."""

    def __init__(self, tmp: str, corpus: Corpus, server: Server) -> None:
        self.tmp, self.corpus, self.server = tmp, corpus, server
        self.env = clean_env(server.home)

    def child(self, kind: str, rows: int, partition_size: int) -> tuple[dict, Watch]:
        """A fresh `--child` process on a fresh output folder: its phases and the server's."""
        out = os.path.join(self.tmp, f"out-{kind}-{rows}-{partition_size}")
        argv = [sys.executable, "-m", "benchmarks.scale", "--child", kind]
        argv += [self.corpus.csv(rows), self.corpus.images, out, str(partition_size)]
        os.sync()  # the previous run's writeback must not stall this one's fsyncs
        with Watch(self.server.pid()) as watch:
            stdout = timed(argv, self.env)[2]
        result = json.loads(stdout.strip().splitlines()[-1])
        return {**result, "out": out}, watch

    def rerun(self, rows: int, out: str) -> tuple[float, Watch]:
        """`imgbatch preprocess` on an existing output: (wall seconds, the server's share)."""
        argv = preprocess_argv(self.corpus.csv(rows), self.corpus.images, out)
        os.sync()
        with Watch(self.server.pid()) as watch:
            seconds = timed(argv, self.env)[0]
        return seconds, watch


def delete_shards(out: str, count: int) -> list[int]:
    """Remove `count` committed shards (first, middle, last ...); return their ids."""
    from imgbatch.layout import SHARDS_DIR
    from imgbatch.output.shards import shard_paths

    ids = sorted(int(f[5:10]) for f in os.listdir(os.path.join(out, SHARDS_DIR)) if "done" in f)
    chosen = sorted({ids[round(k * (len(ids) - 1) / (count - 1))] for k in range(count)})
    for pid in chosen:
        paths = shard_paths(out, pid)
        for path in (paths.done, paths.npy, paths.parquet):
            os.remove(path)
    return chosen


def server_cells(w: Watch) -> str:
    return f"{w.cpu:.1f} | {w.peak_mb:.0f}"


def phase_table(bench: Bench, row_counts: list[int]) -> dict[int, str]:
    """Table 1; returns the flow's output folder per row count (for the reruns)."""
    print(
        "| rows | partitions | core wall s | core CPU s | flow wall s | flow CPU s | "
        "flow - core, ms/partition | server CPU s | server peak RSS MB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    outs = {}
    for rows in row_counts:
        core, _ = bench.child("core", rows, 1000)
        shutil.rmtree(core["out"])
        flow, watch = bench.child("flow", rows, 1000)
        parts = -(-rows // 1000)
        extra = (flow["partitions"] - core["partitions"]) * 1000 / parts
        print(
            f"| {rows:,} | {parts} | {core['partitions']:.1f} | {core['partitions_cpu']:.1f} | "
            f"{flow['partitions']:.1f} | {flow['partitions_cpu']:.1f} | {extra:.1f} | "
            f"{server_cells(watch)} |"
        )
        outs[rows] = flow["out"]
    return outs


def rerun_table(bench: Bench, outs: dict[int, str]) -> None:
    """Table 2: a no-op rerun and a rerun with 3 shards deleted, per row count."""
    print("\n| rows | `imgbatch preprocess` again | wall s | server CPU s | server peak RSS MB |")
    print("|---:|---|---:|---:|---:|")
    for rows, out in outs.items():
        seconds, watch = bench.rerun(rows, out)
        print(f"| {rows:,} | nothing to do (no-op) | {seconds:.1f} | {server_cells(watch)} |")
        ids = delete_shards(out, 3)
        seconds, watch = bench.rerun(rows, out)
        print(
            f"| {rows:,} | shards {', '.join(map(str, ids))} deleted | {seconds:.1f} | "
            f"{server_cells(watch)} |"
        )
        shutil.rmtree(out)


def layout_table(bench: Bench) -> None:
    """Table 3: the cost of each extra partition, core and flow."""
    print(
        f"\n| {LAYOUT_ROWS:,} rows as | core wall s | flow wall s | flow CPU s | "
        "server CPU s | server peak RSS MB |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    walls = {}
    for size in LAYOUTS:
        core, _ = bench.child("core", LAYOUT_ROWS, size)
        flow, watch = bench.child("flow", LAYOUT_ROWS, size)
        for result in (core, flow):
            shutil.rmtree(result["out"])
        walls[size] = (core["partitions"], flow["partitions"])
        print(
            f"| {LAYOUT_ROWS // size} partitions of {size} | {core['partitions']:.1f} | "
            f"{flow['partitions']:.1f} | {flow['partitions_cpu']:.1f} | {server_cells(watch)} |"
        )
    extra = LAYOUT_ROWS // LAYOUTS[1] - LAYOUT_ROWS // LAYOUTS[0]
    core, flow = ((walls[LAYOUTS[1]][i] - walls[LAYOUTS[0]][i]) * 1000 / extra for i in (0, 1))
    print(
        f"\neach extra partition: flow {flow:.1f} ms (target <= 20 ms), core {core:.1f} ms, "
        f"so Prefect's share {flow - core:.1f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", default="20000", help="row counts for tables 1 and 2")
    ap.add_argument("--unique", type=int, default=40, help="distinct photos behind the links")
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    ap.add_argument(
        "--port", type=int, default=0, help="port of the benchmark's server (0: any free one)"
    )
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)  # KIND CSV IMAGES OUT SIZE
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        (flow_child if kind == "flow" else core_child)(*rest)
        return
    row_counts = [int(r) for r in args.rows.split(",")]
    with scratch(args.dir) as tmp:
        corpus = Corpus(tmp, args.unique, max(*row_counts, LAYOUT_ROWS))
        load = os.getloadavg()[0]
        print(f"{os.cpu_count()} cores; 1-min load average {load:.2f} at the start\n")
        with Server(os.path.join(tmp, "home"), args.port) as server:
            bench = Bench(tmp, corpus, server)
            rerun_table(bench, phase_table(bench, row_counts))
            layout_table(bench)
        print(f"\n1-min load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    report.run(main)
