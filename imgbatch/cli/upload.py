"""`imgbatch upload SRC_DIR gs://BUCKET/PREFIX`: the upload-tree flow."""

from __future__ import annotations

import argparse

from imgbatch.cli.options import add_command, values
from imgbatch.cli.outcome import report
from imgbatch.params import UploadParams


def register(sub: argparse._SubParsersAction, name: str) -> None:
    add_command(
        sub,
        name,
        UploadParams,
        check,
        run,
        positional=("src_dir", "dest"),
        help="copy a local folder to gs://BUCKET/PREFIX, gsutil-style, verified by crc32c",
        description="Run the upload-tree flow: one listing of the destination, files whose "
        "size and crc32c already match are skipped, the rest uploaded in parallel and "
        "checked. Uses STORAGE_EMULATOR_HOST when set, else Application Default Credentials.",
    )


def check(args: argparse.Namespace) -> UploadParams:
    from imgbatch.acquire.upload import check_upload_args

    params = UploadParams.checked(**values(args, UploadParams))
    check_upload_args(params.src_dir, params.dest, params.workers)
    return params


def run(args: argparse.Namespace, params: UploadParams) -> int:
    from imgbatch.flows.upload import upload_tree

    def show(s: dict) -> None:
        print(
            f"{s['destination']}: uploaded {s['uploaded']} files ({s['bytes_uploaded']:,} "
            f"bytes), skipped {s['skipped']} already there, {s['recovered']} recovered, in "
            f"{s['seconds']} s"
        )

    return report(args.command, upload_tree(params, return_state=True), show)
