"""Decode throughput on one corpus, in one run: the notebook baseline, a decode-only ceiling,
and the imgbatch core on threads and on processes for 1..all workers.

    .venv/bin/python -m benchmarks.throughput [--n 600] [--workers 1,2]

The corpus is real photos (scikit-image's wheel) re-encoded at 300-1500 px: ~70% JPEG (some
progressive), ~20% RGB PNG, ~10% RGBA PNG. Files are read once before timing (warm cache).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np
import psutil
from PIL import Image

from imgbatch import parallel, samples
from imgbatch.partition import compute
from imgbatch.spec import ImageSpec
from imgbatch.storage import LocalStorage


def notebook(data: bytes) -> np.ndarray:
    """What the original notebook did per image."""
    return np.array(Image.open(io.BytesIO(data)).convert("RGB").resize((64, 64)))


def decode_only(data: bytes) -> None:
    """The decoder's own work at the scale imgbatch decodes (JPEG DCT scaling), nothing else."""
    img = Image.open(io.BytesIO(data))
    if img.format == "JPEG":
        img.draft("RGB", (128, 128))
    img.load()


def cpu_seconds() -> float:
    """CPU time of this process and its live children (process-pool workers)."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += sum(child.cpu_times()[:2])
    return total


def timed(fn: Callable[[], object], n: int) -> tuple[float, float]:
    """(images per second, images per CPU-second)."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    fn()
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return n / wall, n / max(cpu, 1e-9)


def run_pool(paths: list[str], storage: LocalStorage, pool: Executor) -> None:
    compute(paths, storage, ImageSpec(), pool, parallel.io_pool())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=600, help="images in the corpus")
    ap.add_argument("--workers", default=None, help="worker counts, e.g. 1,2 (default 1..cores)")
    args = ap.parse_args()
    cores = parallel.default_workers()
    counts = [int(w) for w in args.workers.split(",")] if args.workers else range(1, cores + 1)

    with tempfile.TemporaryDirectory() as tmp:
        paths = samples.write_tree(tmp, args.n, seed=1)
        storage = LocalStorage(tmp)
        blobs = [storage.read(p) for p in paths]
        mb = sum(map(len, blobs)) / 1e6
        print(
            f"corpus: {args.n} images, {mb:.0f} MB, "
            f"{sum(p.endswith('.jpg') for p in paths)} JPEG; machine: {cores} cores\n"
        )
        rows = []
        base, base_cpu = timed(lambda: [notebook(b) for b in blobs], len(blobs))
        rows.append(("notebook baseline", 1, base, base_cpu))
        rows.append(
            ("decode-only ceiling", 1, *timed(lambda: [decode_only(b) for b in blobs], len(blobs)))
        )
        one = {}
        for kind in ("threads", "processes"):
            for w in counts:
                pool = parallel.decode_pool(kind, w)
                run_pool(paths[: 4 * w], storage, pool)  # start workers, import modules
                rate, per_cpu = timed(lambda pool=pool: run_pool(paths, storage, pool), len(paths))
                one.setdefault(kind, rate)
                rows.append((f"imgbatch {kind}", w, rate, per_cpu))
        parallel.shutdown()

    print("| method | workers | img/s | img per CPU-s | x baseline | x 1 worker |")
    print("|---|---|---|---|---|---|")
    for name, w, rate, per_cpu in rows:
        kind = name.split()[-1]
        scale = f"{rate / one[kind]:.2f}" if kind in one else "-"
        print(f"| {name} | {w} | {rate:.0f} | {per_cpu:.0f} | {rate / base:.2f} | {scale} |")


if __name__ == "__main__":
    main()
