"""`imgbatch stats OUT`: exact per-channel mean/std into run.json, optionally images_f32.npy."""

from __future__ import annotations

import argparse
import os

from prefect import flow

from imgbatch.errors import UsageError
from tasks.stats import compute_stats


@flow(name="image-stats")
def image_stats(out: str, normalize: bool = False) -> dict:
    """Statistics of OUT/images.npy's ok rows (0-255 scale)."""
    return compute_stats(out, normalize)


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="exact per-channel mean/std of OUT/images.npy")
    p.add_argument("out", help="output folder of a finished preprocess run")
    p.add_argument(
        "--normalize",
        action="store_true",
        help="also write OUT/images_f32.npy = (x - mean) / std per channel",
    )
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    if not os.path.isfile(os.path.join(args.out, "run.json")):
        raise UsageError(f"{args.out} has no run.json: run imgbatch preprocess first")
    stats = image_stats(args.out, args.normalize)
    mean = ", ".join(f"{m:.3f}" for m in stats["mean"])
    std = ", ".join(f"{s:.3f}" for s in stats["std"])
    print(f"mean (R, G, B) = {mean}; std = {std} (0-255 scale, ok rows; in run.json)")
    if args.normalize:
        print(f"wrote {os.path.join(args.out, stats['normalized'])}")
    return 0
