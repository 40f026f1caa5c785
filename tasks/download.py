"""Tasks of the download stage: fetch one archive, extract one archive.

wget already resumes and retries inside one task run; a Prefect retry (exponential backoff
with jitter) is the second line, and only for transient errors: a 404, a wrong checksum or a
bad archive fails at once. wget's progress goes to the run log, one line per
PROGRESS_SECONDS at most.
"""

from __future__ import annotations

from dataclasses import asdict

from prefect import get_run_logger, task

from imgbatch.acquire.download import WgetOptions, download
from imgbatch.acquire.extract import extract_archive
from imgbatch.tasks.limits import slot
from imgbatch.tasks.retry import retry_options

PROGRESS_SECONDS = 10.0
# A Prefect global concurrency limit of this name, when it exists, caps downloads across all
# flow runs: `prefect gcl create imgbatch-downloads --limit 2`.
DOWNLOAD_LIMIT = "imgbatch-downloads"


@task(
    name="download-archive",
    task_run_name="download {url}",
    **retry_options(3, 10.0),
    tags=["imgbatch"],
)
def download_archive(
    url: str, dest: str, sha256: str | None, options: WgetOptions, limit: str | None = None
) -> dict:
    logger = get_run_logger()
    with slot(limit):
        got = download(
            url,
            dest,
            sha256=sha256,
            options=options,
            on_progress=logger.info,
            progress_interval=PROGRESS_SECONDS,
        )
    logger.info(
        "%s: %s bytes, sha256 %s%s%s",
        got.path,
        f"{got.size:,}",
        got.sha256,
        "" if got.members is None else f", a whole archive of {got.members:,} files",
        " (already there)" if got.skipped else "",
    )
    return asdict(got)


@task(
    name="extract-archive",
    **retry_options(2, 2.0),
    tags=["imgbatch"],
)
def extract_downloaded(downloaded: dict, dest: str) -> dict:
    return asdict(extract_archive(downloaded["path"], dest))
