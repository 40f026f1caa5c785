"""The download-archives flow: one verified wget download per URL, optionally extracted.

Orchestration only: check every argument, map one download task per URL (and one extract
task per downloaded archive), end Failed naming every URL that failed and why.
"""

from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from imgbatch.acquire.download import WgetOptions
from imgbatch.errors import PermanentError, TransientError, is_retryable
from imgbatch.flows.naming import folder, params_field, run_name
from imgbatch.flows.states import fails_cleanly, failure
from imgbatch.params import DownloadParams
from imgbatch.preflight import check_download
from imgbatch.tasks.download import DOWNLOAD_LIMIT, download_archive, extract_downloaded
from imgbatch.tasks.limits import existing_limit


def describe() -> str:
    """'download 3 archives to work/archives'."""
    n = len(params_field("urls") or [])
    return f"download {n} archive{'s' * (n != 1)} to {folder(params_field('dest'), 2)}"


@flow(name="download-archives", flow_run_name=run_name(describe))
@fails_cleanly
def download_archives(params: DownloadParams) -> list[dict]:
    """Download every URL into dest/NAME, verified; with extract, unpack each archive."""
    jobs = check_download(params)
    options = WgetOptions(
        tries=params.tries, waitretry=params.waitretry, read_timeout=params.read_timeout
    )
    fetch = download_archive.with_options(
        retries=params.retries,
        retry_delay_seconds=exponential_backoff(params.retry_delay_seconds),
    )
    # `parallel` is a parameter of each run (a deployment run's too), so the thread pool is
    # made here rather than fixed in the decorator.
    with ThreadPoolTaskRunner(max_workers=params.parallel) as runner:
        got = runner.map(
            fetch,
            {
                "url": [url for url, _, _ in jobs],
                "dest": unmapped(params.dest),
                "sha256": [s for _, _, s in jobs],
                "options": unmapped(options),
                "limit": unmapped(existing_limit(DOWNLOAD_LIMIT)),
            },
        )
        target = params.extract_to or params.dest
        trees = (
            runner.map(extract_downloaded, {"downloaded": got, "dest": unmapped(target)})
            if params.extract
            else [None] * len(got)
        )
        return collect([url for url, _, _ in jobs], got, trees)


def collect(urls: list[str], got: list, trees: list) -> list[dict]:
    """Results per URL; raise naming every URL that failed (transient if any may pass)."""
    results, failures = [], []
    for url, fut, tree in zip(urls, got, trees, strict=True):
        for f in (fut, tree) if tree is not None else (fut,):
            f.wait()
            if not f.state.is_completed():
                text, exc = failure(f.state)
                failures.append((text if url in text else f"{url}: {text}", exc))
                break
        else:
            results.append({**fut.result(), "extracted": tree.result()["path"] if tree else None})
    if failures:
        lines = "\n".join(f"  {text}" for text, _ in failures)
        transient = any(exc is None or is_retryable(exc) for _, exc in failures)
        kind = TransientError if transient else PermanentError
        raise kind(f"{len(failures)} of {len(urls)} archives failed:\n{lines}")
    return results
