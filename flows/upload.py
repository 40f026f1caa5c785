"""The upload-tree flow and `imgbatch upload SRC_DIR gs://BUCKET/PREFIX [--workers N]`.

gsutil-style: one listing of the destination, only missing or different files are sent,
every upload is checked by crc32c. A rerun with nothing to do costs that one listing.
"""

from __future__ import annotations

import argparse

from prefect import flow

from flows.cli import check_retries, report_failure
from imgbatch.gcs import RetryPolicy
from imgbatch.transfer import check_upload_args
from tasks.limits import existing_limit
from tasks.retry import backoff
from tasks.upload import upload_files

DEFAULT_WORKERS = 8
# A Prefect global concurrency limit of this name, when it exists, caps how many uploads run
# at once across all flow runs (each holds one slot): `prefect gcl create imgbatch-upload -l 1`.
CONCURRENCY_LIMIT = "imgbatch-upload"


@flow(name="upload-tree", log_prints=True)
def upload_tree(
    src_dir: str,
    dest: str,
    workers: int = DEFAULT_WORKERS,
    retries: int = 3,
    retry_delay_seconds: float = 10.0,
    policy: RetryPolicy | None = None,
) -> dict:
    """Copy src_dir to dest (gs://bucket/prefix), skipping objects already there intact.

    `policy` bounds the attempts per object inside one task run; `retries` re-runs the
    whole task (one more listing) when objects still failed for a transient reason.
    """
    task = upload_files.with_options(
        retries=retries, retry_delay_seconds=backoff(retry_delay_seconds, retries)
    )
    summary = task(src_dir, dest, workers, existing_limit(CONCURRENCY_LIMIT), policy)
    print(
        f"{dest}: uploaded {summary['uploaded']}, skipped {summary['skipped']} already there, "
        f"{summary['bytes_uploaded']:,} bytes sent in {summary['seconds']} s"
    )
    return summary


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "upload",
        help="copy a local folder to gs://BUCKET/PREFIX, gsutil-style, verified by crc32c",
        description="Run the upload-tree flow: one listing of the destination, files whose "
        "size and crc32c already match are skipped, the rest uploaded in parallel and "
        "checked. Uses STORAGE_EMULATOR_HOST when set, else Application Default Credentials.",
    )
    p.add_argument("src_dir", metavar="SRC_DIR", help="local folder to upload")
    p.add_argument("dest", metavar="gs://BUCKET/PREFIX", help="destination")
    p.add_argument(
        "--workers", type=int, default=DEFAULT_WORKERS, help="parallel uploads (default 8)"
    )
    p.add_argument("--retries", type=int, default=3, help="Prefect retries of the upload task")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Check the arguments before any work, run the flow, print one line of result."""
    check_upload_args(args.src_dir, args.dest, args.workers)
    check_retries(args.retries)
    state = upload_tree(
        src_dir=args.src_dir,
        dest=args.dest,
        workers=args.workers,
        retries=args.retries,
        return_state=True,
    )
    if not state.is_completed():
        return report_failure("upload", state)
    s = state.result()
    print(
        f"{s['destination']}: uploaded {s['uploaded']} files ({s['bytes_uploaded']:,} bytes), "
        f"skipped {s['skipped']} already there, {s['recovered']} recovered, in {s['seconds']} s"
    )
    return 0
