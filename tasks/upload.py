"""The upload task: one call to imgbatch.acquire.upload.sync_tree, as a Prefect task.

Prefect retries it for transient failures only; each retry costs one listing plus the files
still missing, since what is already there is skipped. Progress (files and bytes) goes to a
progress artifact, the outcome to a markdown summary and a table of failed objects.
"""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from imgbatch.acquire.upload import UploadProgress, UploadReport, sync_tree
from imgbatch.storage.gcs_client import RetryPolicy, gs_url
from imgbatch.tasks.limits import slot
from imgbatch.tasks.progress import ThrottledProgress
from imgbatch.tasks.retry import retry_options

SUMMARY_KEY = "imgbatch-upload-summary"
FAILED_KEY = "imgbatch-upload-failures"
PROGRESS_INTERVAL_SECONDS = 1.0


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


class UploadProgressArtifact:
    """A progress artifact (by bytes) that names files and bytes; updated at most once a second."""

    def __init__(self, dest: str) -> None:
        self.dest = dest
        text = f"upload to {dest}: listing"
        self.artifact = ThrottledProgress(0.0, text, PROGRESS_INTERVAL_SECONDS)

    def update(self, p: UploadProgress) -> None:
        pct = 100.0 * p.bytes_done / p.bytes_total if p.bytes_total else 100.0
        text = (
            f"upload to {self.dest}: {p.files_done}/{p.files_total} files, "
            f"{_mb(p.bytes_done)} of {_mb(p.bytes_total)}"
        )
        self.artifact.update(pct, text, last=p.files_done >= p.files_total)


def publish_upload_summary(report: UploadReport) -> None:
    """Markdown counts (files and bytes) and, when any, a table of failed objects."""
    s = report.summary()
    lines = [
        "# imgbatch upload",
        "",
        f"- destination: `{report.destination}`",
        f"- uploaded: {s['uploaded']} files, {_mb(s['bytes_uploaded'])}",
        f"- skipped (same size and crc32c already there): {s['skipped']} files, "
        f"{_mb(s['bytes_skipped'])}",
        f"- recovered after a retry, 412 check or crc32c re-send: {s['recovered']}",
        f"- failed: {s['failed']}",
        f"- seconds: {s['seconds']}",
    ]
    create_markdown_artifact("\n".join(lines), key=SUMMARY_KEY, description="upload summary")
    if report.failed:
        rows = [
            {"object": gs_url(report.bucket, name), "reason": reason}
            for name, reason in sorted(report.failed.items())[:500]
        ]
        create_table_artifact(rows, key=FAILED_KEY, description="objects not uploaded, first 500")


@task(
    name="upload-files",
    **retry_options(3, 10.0),
    tags=["imgbatch"],
)
def upload_files(
    src_dir: str, dest: str, workers: int, limit: str | None, policy: RetryPolicy | None = None
) -> dict:
    """Sync src_dir to dest; holds a slot of the global concurrency limit `limit` if given."""
    progress = UploadProgressArtifact(dest)
    with slot(limit):
        report = sync_tree(src_dir, dest, workers, policy, on_progress=progress.update)
    publish_upload_summary(report)
    report.raise_for_failures()
    return report.summary()
