"""`imgbatch demo`: the whole job on built-in sample data, then a check of what it wrote.

Rerunning the demo reuses everything: same archives, same extraction, done partitions.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from imgbatch.params import PrepareParams


def register(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="run the whole job on built-in sample photos and verify it")
    p.add_argument("--workdir", default="demo-run", help="folder for sample data and output")
    p.add_argument("--rows", type=int, default=240, help="CSV rows to generate")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, params: None) -> int:
    from cli.demo_data import make_archives, serve_folder
    from flows.prepare import prepare_dataset
    from imgbatch.verify import verify_output

    workdir = Path(args.workdir).resolve()
    csv, archives = make_archives(workdir, args.rows)
    out = workdir / "out"
    print(
        f"sample data: {args.rows} CSV rows in {csv}; {len(archives)} archives in "
        f"{archives[0].parent}, served on 127.0.0.1"
    )
    with serve_folder(archives[0].parent) as base:
        params = PrepareParams(
            urls=[f"{base}/{a.name}" for a in archives],
            csv=str(csv),
            work=str(workdir / "work"),
            out=str(out),
            sha256=[hashlib.sha256(a.read_bytes()).hexdigest() for a in archives],
            partition_size=50,
        )
        state = prepare_dataset(params, return_state=True)
    if not state.is_completed():
        print(f"demo failed: {state.message}")
        return 1
    run = verify_output(str(out))
    print(f"\nverified output in {out}/")
    print(f"  images.npy     uint8 {tuple(run['shape'])}, row i = CSV row i, sha256 checked")
    print("  index.parquet  row, image_path, status, error, width, height, partition")
    print(f"  run.json       parameters, counts {run['counts']}, timings")
    print("  preview.png    contact sheet (flagged rows crossed in red)")
    print(f"  shards/        one committed shard per partition ({run['partitions']})")
    print(f"downloads and extracted trees: {workdir / 'work'}/")
    return 0
