"""The upload-tree flow: a local folder -> gs://BUCKET/PREFIX, gsutil-style.

One listing of the destination, only missing or different files are sent, every upload is
checked by crc32c. A rerun with nothing to do costs that one listing.
"""

from prefect import flow
from prefect.tasks import exponential_backoff

from imgbatch.acquire.upload import check_upload_args
from imgbatch.flows.naming import folder, params_field, run_name
from imgbatch.flows.states import fails_cleanly
from imgbatch.params import UploadParams
from imgbatch.storage.gcs_client import RetryPolicy
from imgbatch.tasks.limits import existing_limit
from imgbatch.tasks.upload import upload_files

# A Prefect global concurrency limit of this name, when it exists, caps how many uploads run
# at once across all flow runs (each holds one slot): `prefect gcl create imgbatch-upload -l 1`.
CONCURRENCY_LIMIT = "imgbatch-upload"


def describe() -> str:
    """'upload images to gs://bucket/prefix'."""
    return f"upload {folder(params_field('src_dir'))} to {params_field('dest')}"


@flow(name="upload-tree", flow_run_name=run_name(describe), log_prints=True)
@fails_cleanly
def upload_tree(params: UploadParams) -> dict:
    """Copy src_dir to dest, skipping objects already there intact.

    The object_* parameters bound the attempts per object inside one task run; `retries`
    re-runs the whole task (one more listing) when objects still failed for a transient reason.
    """
    check_upload_args(params.src_dir, params.dest, params.workers)
    task = upload_files.with_options(
        retries=params.retries,
        retry_delay_seconds=exponential_backoff(params.retry_delay_seconds),
    )
    summary = task(
        params.src_dir,
        params.dest,
        params.workers,
        existing_limit(CONCURRENCY_LIMIT),
        RetryPolicy(**params.object_retry()),
    )
    print(
        f"{params.dest}: uploaded {summary['uploaded']}, skipped {summary['skipped']} already "
        f"there, {summary['bytes_uploaded']:,} bytes sent in {summary['seconds']} s"
    )
    return summary
