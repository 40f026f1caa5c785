"""The download-archives flow and the `imgbatch download` command.

Orchestration only: check the arguments, map one download task per URL (and one extract
task per downloaded archive), end Failed naming every URL that failed and why.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import flow, unmapped
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner

from flows.cli import check_retries, report_failure
from flows.states import failure
from imgbatch.archive import archive_stem
from imgbatch.download import WgetOptions, check_requests, ensure_writable, require_wget
from imgbatch.errors import PermanentError, TransientError, UsageError, is_retryable
from tasks.download import DOWNLOAD_LIMIT, download_archive, extract_downloaded
from tasks.limits import existing_limit
from tasks.retry import backoff

# Simultaneous downloads in one flow run (`--parallel`); more rarely helps one link.
DOWNLOADS_IN_FLIGHT = 4


@flow(name="download-archives", task_runner=ThreadPoolTaskRunner(max_workers=DOWNLOADS_IN_FLIGHT))
def download_archives(
    urls: list[str],
    dest: str,
    sha256: list[str] | None = None,
    extract: bool = False,
    tries: int = 10,
    read_timeout: float = 60.0,
    waitretry: float = 10.0,
    retries: int = 3,
    retry_delay_seconds: float = 10.0,
) -> list[dict]:
    """Download every URL into dest/NAME, verified; with extract, unpack each to dest/STEM/.

    `tries`, `read_timeout`, `waitretry` go to wget (resume inside one task run); `retries`
    and `retry_delay_seconds` are Prefect's, for transient failures only.
    """
    jobs = check_arguments(urls, dest, sha256, extract)
    options = WgetOptions(tries=tries, waitretry=waitretry, read_timeout=read_timeout)
    fetch = download_archive.with_options(
        retries=retries, retry_delay_seconds=backoff(retry_delay_seconds, retries)
    )
    got = fetch.map(
        [url for url, _, _ in jobs],
        unmapped(dest),
        [s for _, _, s in jobs],
        unmapped(options),
        unmapped(existing_limit(DOWNLOAD_LIMIT)),
    )
    trees = extract_downloaded.map(got, unmapped(dest)) if extract else [None] * len(got)
    results, failures = [], []
    for (url, _, _), fut, tree in zip(jobs, got, trees, strict=True):
        for f in (fut, tree) if tree is not None else (fut,):
            f.wait()
            if not f.state.is_completed():
                failures.append(_failure(url, f.state))
                break
        else:
            results.append({**fut.result(), "extracted": tree.result()["path"] if tree else None})
    if failures:
        lines = "\n".join(f"  {text}" for text, _ in failures)
        kind = TransientError if any(is_retryable(e) for _, e in failures) else PermanentError
        raise kind(f"{len(failures)} of {len(jobs)} archives failed:\n{lines}")
    return results


def check_arguments(
    urls: list[str], dest: str, sha256: list[str] | None, extract: bool
) -> list[tuple[str, str, str | None]]:
    """Everything that can be known wrong before any download starts (UsageError, or
    PermanentError for a destination that cannot take files)."""
    jobs = check_requests(urls, sha256)
    if extract:
        for _, name, _ in jobs:
            archive_stem(name)
    require_wget()
    ensure_writable(Path(dest))
    return jobs


def _failure(url: str, state: State) -> tuple[str, BaseException]:
    """(one line naming the URL and the reason, the exception) of a failed task run."""
    text, exc = failure(state)
    return (text if url in text else f"{url}: {text}"), exc or TransientError(text)


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "download",
        help="download archives with wget (resumed, verified) and optionally extract them",
        description="Run the download-archives flow: one wget per URL with resume and retries, "
        "saved as DEST/NAME only after its size (and sha256, when given) checked out.",
    )
    p.add_argument("urls", nargs="+", metavar="URL", help="http(s) or ftp URL of an archive")
    p.add_argument("--dest", required=True, help="folder for the archives (and extracted trees)")
    p.add_argument("--sha256", nargs="+", metavar="HEX", help="expected sha256, one per URL")
    p.add_argument(
        "--extract",
        action="store_true",
        help="extract each archive to DEST/STEM/ (checked before anything is written)",
    )
    p.add_argument(
        "--parallel",
        type=int,
        default=DOWNLOADS_IN_FLIGHT,
        help=f"simultaneous downloads (default {DOWNLOADS_IN_FLIGHT})",
    )
    p.add_argument("--tries", type=int, default=10, help="wget attempts per task run")
    p.add_argument("--retries", type=int, default=3, help="Prefect retries per URL (transient)")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Check every argument before any work, run the flow, print one line per archive."""
    for name in ("parallel", "tries"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be 1 or more, got {getattr(args, name)}")
    check_retries(args.retries)
    try:
        check_arguments(args.urls, args.dest, args.sha256, args.extract)
    except PermanentError as exc:
        raise UsageError(f"--dest: {exc}") from None
    run = download_archives.with_options(
        task_runner=ThreadPoolTaskRunner(max_workers=args.parallel)
    )
    state = run(
        urls=args.urls,
        dest=args.dest,
        sha256=args.sha256,
        extract=args.extract,
        tries=args.tries,
        retries=args.retries,
        return_state=True,
    )
    if not state.is_completed():
        return report_failure("download", state)
    for r in state.result():
        note = " (already there)" if r["skipped"] else ""
        tree = f" -> extracted to {r['extracted']}" if r["extracted"] else ""
        print(f"{r['path']}: {r['size']:,} bytes, sha256 {r['sha256']}{note}{tree}")
    return 0
