"""`imgbatch prepare`: the prepare-dataset flow (download, extract, upload, preprocess)."""

from __future__ import annotations

import argparse

from cli.options import add_options, values
from cli.outcome import preprocess_result
from imgbatch.params import PrepareParams
from imgbatch.preflight import check_prepare


def register(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name,
        help="download + extract archives, optionally upload to gs://, then preprocess",
        description="Run the prepare-dataset flow: the whole job, checked before any download.",
    )
    add_options(p, PrepareParams, positional=("urls",))
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    params = check_prepare(PrepareParams.checked(**values(args, PrepareParams)))
    from flows.prepare import prepare_dataset

    return preprocess_result(args.command, prepare_dataset(params, return_state=True))
