"""`imgbatch demo`: the whole job on built-in sample data, then a check of what it wrote.

Sample images are real photos from scikit-image's wheel, plus a few broken files and a
missing one, so the demo shows flagged rows as well as good ones.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from flows.preprocess import preprocess_images
from imgbatch import samples
from imgbatch.verify import verify_output


def make_demo_data(workdir: Path, rows: int) -> tuple[Path, Path]:
    """Write images and a CSV whose last rows are broken on purpose; return (csv, root)."""
    root = workdir / "images"
    paths = samples.write_tree(root, rows - 4)
    good_jpg = (root / next(p for p in paths if p.endswith(".jpg"))).read_bytes()
    samples.write_if_changed(root / "broken/empty.jpg", b"")
    samples.write_if_changed(root / "broken/page.jpg", b"<html><body>404 Not Found</body></html>")
    samples.write_if_changed(root / "broken/truncated.jpg", good_jpg[: len(good_jpg) // 2])
    paths += ["broken/empty.jpg", "broken/page.jpg", "broken/truncated.jpg", "gone/missing.jpg"]
    return samples.write_csv(workdir / "products.csv", paths), root


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the pipeline on built-in sample photos and verify it")
    p.add_argument("--workdir", default="demo-run", help="folder for sample data and output")
    p.add_argument("--rows", type=int, default=240, help="CSV rows to generate")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir).resolve()
    csv, root = make_demo_data(workdir, args.rows)
    out = workdir / "out"
    print(f"sample data: {args.rows} rows in {csv}, images under {root}")
    state = preprocess_images(
        csv=str(csv), images=str(root), out=str(out), partition_size=50, return_state=True
    )
    if not state.is_completed():
        print(f"demo failed: {state.message}")
        return 1
    run = verify_output(str(out))
    print(f"\nverified output in {out}{os.sep}")
    print(f"  images.npy     uint8 {tuple(run['shape'])}, row i = CSV row i, sha256 checked")
    print("  index.parquet  row, image_path, status, error, width, height, partition")
    print(f"  run.json       parameters, counts {run['counts']}, timings")
    print("  preview.png    contact sheet (flagged rows crossed in red)")
    print(f"  shards/        one committed shard per partition ({run['partitions']})")
    return 0
