"""`imgbatch prepare`: the prepare-dataset flow (download, extract, upload, preprocess)."""

from __future__ import annotations

import argparse

from imgbatch.cli.options import add_command, values
from imgbatch.cli.outcome import preprocess_result
from imgbatch.params import PrepareParams
from imgbatch.preflight import check_prepare


def register(sub: argparse._SubParsersAction, name: str) -> None:
    add_command(
        sub,
        name,
        PrepareParams,
        check,
        run,
        positional=("urls",),
        help="download + extract archives, optionally upload to gs://, then preprocess",
        description="Run the prepare-dataset flow: the whole job, checked before any download.",
    )


def check(args: argparse.Namespace) -> PrepareParams:
    return check_prepare(PrepareParams.checked(**values(args, PrepareParams)))


def run(args: argparse.Namespace, params: PrepareParams) -> int:
    from imgbatch.flows.prepare import prepare_dataset

    return preprocess_result(args.command, prepare_dataset(params, return_state=True))
