"""Checks that need the file system, done before any work (docs/ARCHITECTURE.md, "Preflight").

They run at each edge: in the CLI before Prefect is even imported (exit 2 at once), and as
the first step of a flow, so a deployment run with a bad parameter fails in seconds. No
pandas, no storage client: a header read and a few stats, and one TCP connection to a Dask
scheduler named by the run (Dask itself would retry a refused address for 30 s).
"""

from __future__ import annotations

import csv
import importlib.util
import os
import socket
import tempfile
import urllib.parse
from pathlib import Path

from imgbatch.errors import PermanentError, UsageError
from imgbatch.params import DownloadParams, PrepareParams, PreprocessParams, absolute
from imgbatch.plan.rows import check_csv, csv_file
from imgbatch.storage.urls import is_gcs_url
from imgbatch.timeouts import CONNECT_TIMEOUT


def check_has_rows(name: str) -> None:
    """The CSV (a path or a gs:// URL) has a row after its header (checked by check_csv)."""
    with open(csv_file(name), newline="", encoding="utf-8-sig", errors="replace") as f:
        records = csv.reader(f)
        next(records, None)
        if not any(any(field.strip() for field in row) for row in records):
            raise UsageError(f"CSV {name!r} has a header but no rows")


def check_images_root(root: str) -> None:
    """A local images root is a readable folder; a gs:// root names a valid bucket (the rest
    is checked by its listing)."""
    if is_gcs_url(root):
        check_gcs_url(root)
        return
    if not os.path.isdir(root):
        raise UsageError(f"images root {root!r} is not a folder")
    if not os.access(root, os.R_OK | os.X_OK):
        raise UsageError(f"images root {root!r} is not readable")


def check_out(out: str) -> None:
    """OUT is a folder we can write, or can be created; or gs://BUCKET/PREFIX with a valid
    bucket name (whether the bucket exists is answered by taking OUT's lock, first thing)."""
    if is_gcs_url(out):
        check_gcs_url(out)
        return
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"out {out!r} is a file, not a folder")
    probe = out
    while not os.path.exists(probe):
        probe = os.path.dirname(probe) or "."
    if not os.path.isdir(probe) or not can_create_in(probe):
        raise UsageError(f"out {out!r} cannot be written ({probe!r} is not a writable folder)")


def can_create_in(folder: str) -> bool:
    """A folder can be made in `folder` (tried, then removed): permission bits are not enough
    (root may write anywhere, yet not under /proc, nor on a read-only mount)."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".imgbatch-probe-", dir=folder))
    except OSError:
        return False
    return True


DASK_PORT = 8786  # a scheduler's port when the address names none, as in Dask


def check_dask(address: str | None) -> None:
    """A Dask address needs the prefect-dask extra (found, not imported: that takes seconds)
    and a scheduler that accepts a connection there within CONNECT_TIMEOUT."""
    if not address:
        return
    if importlib.util.find_spec("prefect_dask") is None:
        raise UsageError("--dask-address needs prefect-dask: pip install 'imgbatch[dask]'")
    url = urllib.parse.urlsplit(address if "://" in address else f"tcp://{address}")
    if url.scheme not in ("tcp", "tls"):
        return  # another transport (ucx, inproc): Dask's own connect says what is wrong
    try:
        where = (url.hostname, url.port or DASK_PORT)
        socket.create_connection(where, timeout=CONNECT_TIMEOUT).close()
    except (OSError, ValueError) as exc:
        why = "connection refused" if isinstance(exc, ConnectionRefusedError) else str(exc)
        if isinstance(exc, TimeoutError):
            why = f"no answer within {CONNECT_TIMEOUT:g} s"
        raise UsageError(
            f"cannot reach the Dask scheduler at --dask-address {address} ({why}): check the "
            "address, or leave it out to run on this machine"
        ) from None


def check_preprocess(params: PreprocessParams) -> PreprocessParams:
    """Every file-system check of a preprocess run; the parameters with absolute paths."""
    params = params.absolute()
    check_csv(params.csv, params.column)
    check_has_rows(params.csv)
    check_images_root(params.images)
    check_out(params.out)
    check_dask(params.dask_address)
    return params


def check_download(params: DownloadParams) -> list[tuple[str, str, str | None]]:
    """(url, file name, sha256) per archive, once every download argument checked out:
    URLs and checksums, archive names when extracting, wget present, dest writable."""
    from imgbatch.acquire.archive import archive_stem
    from imgbatch.acquire.download import check_requests, ensure_writable, require_wget

    jobs = check_requests(params.urls, params.sha256)
    if params.extract:
        for _, name, _ in jobs:
            archive_stem(name)
    require_wget()
    try:
        ensure_writable(Path(params.dest))
    except PermanentError as exc:
        raise UsageError(f"dest: {exc}") from None
    return jobs


def check_gcs_url(url: str) -> None:
    """A gs://BUCKET/PREFIX whose bucket name is valid (no network)."""
    from imgbatch.storage.gcs_client import parse_gs_url

    parse_gs_url(url)


def check_prepare(params: PrepareParams) -> PrepareParams:
    """Every check of the whole job before anything is downloaded; absolute paths."""
    work = os.path.abspath(params.work)
    params = params.model_copy(
        update={
            "work": work,
            "csv": absolute(params.csv),
            "out": absolute(params.out),
        }
    )
    check_download(params.download())
    check_csv(params.csv, params.column)
    check_out(params.out)
    check_dask(params.dask_address)
    if params.upload_to:
        check_gcs_url(params.upload_to)
    return params
