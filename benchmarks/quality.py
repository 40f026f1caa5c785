"""Standardization quality on real photos vs the full-resolution Lanczos reference.

    .venv/bin/python -m benchmarks.quality [--n 200] [--size 64] [--seed 0]

Writes a corpus with imgbatch.sampledata.samples.write_tree (JPEG and PNG, 300-1500 px) into a temp
folder, standardizes every file in each resize mode and prints, per format and mode, the
count of ok rows and their mean and min PSNR against benchmarks.reference.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchmarks import report
from benchmarks.reference import PSNR_CAP, psnr, reference
from imgbatch.pixels.images import standardize
from imgbatch.pixels.spec import RESIZE_MODES, ImageSpec
from imgbatch.sampledata.samples import write_tree

Row = tuple[str, str, int, int, float, float]


def measure(root: Path, paths: list[str], size: int) -> list[Row]:
    """Rows of (format, mode, ok count, failed count, mean PSNR, min PSNR)."""
    scores: dict[tuple[str, str], list[float]] = defaultdict(list)
    failed: dict[tuple[str, str], int] = defaultdict(int)
    for rel in paths:
        data = (root / rel).read_bytes()
        fmt = Path(rel).suffix.lstrip(".")
        for mode in RESIZE_MODES:
            spec = ImageSpec(size=size, resize_mode=mode)
            arr, outcome = standardize(data, spec)
            if outcome.status != "ok":
                failed[fmt, mode] += 1
                continue
            scores[fmt, mode].append(psnr(arr, reference(data, spec)))
    rows = []
    keys = sorted(set(scores) | set(failed), key=lambda k: (k[0], RESIZE_MODES.index(k[1])))
    for fmt, mode in keys:
        vals = scores[fmt, mode]
        mean = statistics.fmean(vals) if vals else float("nan")
        low = min(vals) if vals else float("nan")
        rows.append((fmt, mode, len(vals), failed[fmt, mode], mean, low))
    return rows


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, build the corpus, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="number of images (default 200)")
    ap.add_argument("--size", type=int, default=64, help="output side S (default 64)")
    ap.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="imgbatch-quality-") as tmp:
        root = Path(tmp)
        paths = write_tree(root, args.n, seed=args.seed)
        rows = measure(root, paths, args.size)
    elapsed = time.perf_counter() - t0
    print(
        f"quality: n={args.n} size={args.size} seed={args.seed} "
        f"(PSNR vs full-resolution Lanczos; identical = {PSNR_CAP:.0f} dB)"
    )
    print("\n| format | mode | count | failed | mean PSNR dB | min PSNR dB |")
    print("|---|---|---:|---:|---:|---:|")
    for fmt, mode, count, bad, mean, low in rows:
        print(f"| {fmt} | {mode} | {count} | {bad} | {mean:.2f} | {low:.2f} |")
    print(f"\n({elapsed:.1f} s)")


if __name__ == "__main__":
    report.run(main)
