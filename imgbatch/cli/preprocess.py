"""`imgbatch preprocess`: the preprocess-images flow from the command line."""

from __future__ import annotations

import argparse

from imgbatch.cli.options import add_command, values
from imgbatch.cli.outcome import preprocess_result
from imgbatch.params import PreprocessParams
from imgbatch.preflight import check_preprocess


def register(sub: argparse._SubParsersAction, name: str) -> None:
    add_command(
        sub,
        name,
        PreprocessParams,
        check,
        run,
        help="standardize every image named by a CSV into OUT/images.npy",
        description="Run the preprocess-images flow (against the Prefect server in "
        "PREFECT_API_URL when set, else a temporary local one).",
    )


def check(args: argparse.Namespace) -> PreprocessParams:
    """Every argument, checked before Prefect starts."""
    return check_preprocess(PreprocessParams.checked(**values(args, PreprocessParams)))


def run(args: argparse.Namespace, params: PreprocessParams) -> int:
    """Run the flow, print the result."""
    from imgbatch.flows.preprocess import preprocess_images

    return preprocess_result(args.command, preprocess_images(params, return_state=True))
