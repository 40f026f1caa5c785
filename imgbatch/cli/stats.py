"""`imgbatch stats OUT`: the image-stats flow."""

from __future__ import annotations

import argparse
import os

from imgbatch.cli.options import add_command, values
from imgbatch.cli.outcome import report
from imgbatch.errors import UsageError
from imgbatch.params import StatsParams


def register(sub: argparse._SubParsersAction, name: str) -> None:
    add_command(
        sub,
        name,
        StatsParams,
        check,
        run,
        positional=("out",),
        help="exact per-channel mean/std of OUT/images.npy",
    )


def check(args: argparse.Namespace) -> StatsParams:
    params = StatsParams.checked(**values(args, StatsParams))
    if "://" not in params.out and not os.path.isfile(os.path.join(params.out, "run.json")):
        raise UsageError(f"{params.out} has no run.json: run imgbatch preprocess first")
    return params


def run(args: argparse.Namespace, params: StatsParams) -> int:
    from imgbatch.flows.stats import image_stats

    def show(stats: dict) -> None:
        mean = ", ".join(f"{m:.3f}" for m in stats["mean"])
        std = ", ".join(f"{s:.3f}" for s in stats["std"])
        print(f"mean (R, G, B) = {mean}; std = {std} (0-255 scale, ok rows; in run.json)")
        if params.normalize:
            print(f"wrote {os.path.join(params.out, stats['normalized'])}")

    return report(args.command, image_stats(params, return_state=True), show)
