"""`imgbatch preprocess`: the preprocess-images flow from the command line."""

from __future__ import annotations

import argparse

from imgbatch.cli.options import add_command, values
from imgbatch.cli.outcome import preprocess_result
from imgbatch.params import PreprocessParams
from imgbatch.preflight import check_preprocess


def register(sub: argparse._SubParsersAction, name: str) -> None:
    p = add_command(
        sub,
        name,
        PreprocessParams,
        check,
        run,
        help="standardize every image named by a CSV into OUT/images.npy",
        description="Run the preprocess-images flow (against the Prefect server in "
        "PREFECT_API_URL when set, else a temporary local one).",
    )
    p.add_argument(
        "--dask-address",
        default=None,
        help="run partitions on an existing Dask cluster (tcp://host:8786) via prefect-dask; "
        "--workers is then the decode threads per Dask worker",
    )


def check(args: argparse.Namespace) -> PreprocessParams:
    """Every argument, checked before Prefect starts."""
    return check_preprocess(PreprocessParams.checked(**values(args, PreprocessParams)))


def run(args: argparse.Namespace, params: PreprocessParams) -> int:
    """Run the flow, print the result."""
    from imgbatch.flows.preprocess import preprocess_images

    flow_ = preprocess_images
    if args.dask_address:
        from prefect_dask import DaskTaskRunner

        flow_ = flow_.with_options(task_runner=DaskTaskRunner(address=args.dask_address))
    return preprocess_result(args.command, flow_(params, return_state=True))
