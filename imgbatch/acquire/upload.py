"""gsutil-style upload of a local folder to gs://bucket/prefix, verified by crc32c.

One listing of the destination decides what to send: a file whose object already has the
same size and crc32c is skipped, so a rerun with nothing to do costs that one listing.
Everything else is sent in parallel with `if_generation_match` (0 for a new object, the
listed generation to replace one), so a retried request never writes twice. A 412 means the
object is already there (typically our own write whose response was lost): its crc32c
decides whether it counts as uploaded or gets replaced. After each upload the stored crc32c
is compared with the local file's; on a mismatch the object is deleted and sent again, as
gsutil does (the emulator, unlike GCS, accepts corrupted bodies). Local files map to
`prefix/<relative path>`; objects under the prefix with no local file are left alone.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from google.api_core import exceptions as api_exc

from imgbatch.errors import ImgbatchError, PermanentError, TransientError, UsageError
from imgbatch.storage.gcs_client import (
    RetryPolicy,
    call_endpoint,
    endpoint,
    file_crc32c,
    gs_url,
    list_prefix,
    make_client,
    object_name,
    parse_gs_url,
    translate,
)
from imgbatch.upstream import gcs_refused_checksum

if TYPE_CHECKING:
    from google.cloud.storage import Bucket, Client


@dataclass(frozen=True)
class LocalFile:
    path: str
    name: str  # object name
    size: int


@dataclass
class FileOutcome:
    """What happened to one file: status is uploaded, skipped or failed."""

    name: str
    size: int
    status: str
    reason: str = ""
    notes: list[str] = field(default_factory=list)  # problems met on the way, in order
    permanent: bool = False  # a failure that retrying cannot fix


@dataclass
class UploadProgress:
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int


@dataclass
class UploadReport:
    """uploaded / skipped / failed object names, with reasons for failures and recoveries."""

    bucket: str
    destination: str
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    recovered: dict[str, list[str]] = field(default_factory=dict)
    permanent: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0
    bytes_skipped: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def add(self, outcome: FileOutcome) -> None:
        if outcome.notes and outcome.status == "uploaded":
            self.recovered[outcome.name] = outcome.notes
        if outcome.status == "uploaded":
            self.uploaded.append(outcome.name)
            self.bytes_uploaded += outcome.size
        elif outcome.status == "skipped":
            self.skipped.append(outcome.name)
            self.bytes_skipped += outcome.size
        else:
            self.failed[outcome.name] = outcome.reason
            if outcome.permanent:
                self.permanent.append(outcome.name)

    def summary(self, max_listed: int = 20) -> dict:
        """A small JSON-able dict for logs, artifacts and the orchestrator."""
        failed = dict(sorted(self.failed.items())[:max_listed])
        return {
            "destination": self.destination,
            "uploaded": len(self.uploaded),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "recovered": len(self.recovered),
            "bytes_uploaded": self.bytes_uploaded,
            "bytes_skipped": self.bytes_skipped,
            "seconds": round(self.seconds, 3),
            "failures": failed,
        }

    def raise_for_failures(self) -> None:
        """Raise naming the failed objects: PermanentError if retrying cannot help."""
        if not self.failed:
            return
        names = sorted(self.failed)
        shown = "; ".join(f"{gs_url(self.bucket, n)}: {self.failed[n]}" for n in names[:5])
        more = f" (and {len(names) - 5} more)" if len(names) > 5 else ""
        msg = f"{len(names)} of {self.total} uploads failed: {shown}{more}"
        if all(n in self.permanent for n in names):
            raise PermanentError(msg)
        raise TransientError(msg)

    @property
    def total(self) -> int:
        return len(self.uploaded) + len(self.skipped) + len(self.failed)


def local_files(src_dir: str | os.PathLike, prefix: str) -> list[LocalFile]:
    """Regular files under src_dir (symlinks are not followed), in name order."""
    root = os.path.join(os.fspath(src_dir), "")
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            full = os.path.join(dirpath, fn)
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode):
                rel = full[len(root) :].replace(os.sep, "/")
                out.append(LocalFile(full, object_name(prefix, rel), st.st_size))
    return out


def check_upload_args(src_dir: str | os.PathLike, dest: str, workers: int) -> tuple[str, str]:
    """(bucket, prefix) if the arguments are usable, else UsageError; no network."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers must be a positive integer, not {workers!r}")
    bucket_name, prefix = parse_gs_url(dest)
    if not os.path.isdir(src_dir) or not os.access(src_dir, os.R_OK | os.X_OK):
        raise UsageError(f"source {str(src_dir)!r} is not a readable folder")
    return bucket_name, prefix


def sync_tree(
    src_dir: str | os.PathLike,
    dest: str,
    workers: int = 8,
    policy: RetryPolicy | None = None,
    client: Client | None = None,
    on_progress: Callable[[UploadProgress], None] | None = None,
) -> UploadReport:
    """Sync src_dir to dest (gs://bucket/prefix); never raises for a single file's failure.

    Failures are listed in the report (call `raise_for_failures`). on_progress is called
    from this thread after each file.
    """
    bucket_name, prefix = check_upload_args(src_dir, dest, workers)
    policy = policy or RetryPolicy()
    t0 = time.perf_counter()
    files = local_files(src_dir, prefix)
    client = client or make_client(pool_size=workers)
    bucket = client.bucket(bucket_name)
    remote = list_prefix(bucket, prefix, policy)
    report = UploadReport(bucket_name, gs_url(bucket_name, prefix))

    progress = UploadProgress(0, len(files), 0, sum(f.size for f in files))

    def record(outcome: FileOutcome) -> None:
        report.add(outcome)
        progress.files_done += 1
        progress.bytes_done += outcome.size
        if on_progress is not None:
            on_progress(progress)

    pending = _skip_intact(files, remote, record)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="upload") as pool:
        futures = [pool.submit(sync_file, bucket, f, remote.get(f.name), policy) for f in pending]
        for fut in as_completed(futures):
            record(fut.result())
    report.seconds = time.perf_counter() - t0
    return report


def _skip_intact(
    files: list[LocalFile], remote: dict, record: Callable[[FileOutcome], None]
) -> list[LocalFile]:
    """Record the files already there intact as skipped; return the others. The common rerun
    case, decided in the calling thread without a thread hop per file."""
    pending = []
    for f in files:
        if _readable_intact(f, remote.get(f.name)):
            record(FileOutcome(f.name, f.size, "skipped"))
        else:
            pending.append(f)
    return pending


def intact(listed: dict | None, size: int, crc: str) -> bool:
    """The listed object already holds these bytes (same size and crc32c)."""
    return bool(listed) and listed["size"] == size and listed["crc32c"] == crc


def _readable_intact(f: LocalFile, listed: dict | None) -> bool:
    if not listed or listed["size"] != f.size:
        return False
    try:
        return intact(listed, f.size, file_crc32c(f.path))
    except OSError:
        return False  # sync_file reports the read failure


def sync_file(
    bucket: Bucket, f: LocalFile, listed: dict | None, policy: RetryPolicy
) -> FileOutcome:
    """Skip, upload or fail one file; errors become the outcome's reason."""
    try:
        crc = file_crc32c(f.path)
    except OSError as exc:
        return FileOutcome(f.name, f.size, "failed", f"cannot read {f.path}: {exc}", permanent=True)
    if intact(listed, f.size, crc):
        return FileOutcome(f.name, f.size, "skipped")
    sender = _Sender(bucket, f, crc, listed["generation"] if listed else 0, policy)
    uri = gs_url(bucket.name, f.name)
    try:
        call_endpoint(sender.attempt, f"uploading {uri}", policy, endpoint())
    except ImgbatchError as exc:
        permanent = isinstance(exc, PermanentError | UsageError)
        return FileOutcome(f.name, f.size, "failed", str(exc), sender.notes, permanent)
    return FileOutcome(f.name, f.size, "uploaded", notes=sender.notes)


class _Sender:
    """One file's upload attempts; remembers the generation the next attempt must match."""

    def __init__(self, bucket: Bucket, f: LocalFile, crc: str, generation: int, policy) -> None:
        self.bucket, self.file, self.crc, self.policy = bucket, f, crc, policy
        self.generation = generation
        self.uri = gs_url(bucket.name, f.name)
        self.notes: list[str] = []

    def attempt(self) -> None:
        try:
            self._send()
        except TransientError as exc:
            self.notes.append(str(exc))
            raise

    def _send(self) -> None:
        """Upload once and check what was stored."""
        blob = self.bucket.blob(self.file.name)
        try:
            blob.upload_from_filename(
                self.file.path,
                if_generation_match=self.generation,
                checksum="crc32c",
                retry=self.policy.client_retry(),
                timeout=self.policy.timeouts(),
            )
        except api_exc.PreconditionFailed:
            self._resolve_412()
            return
        except api_exc.BadRequest as exc:
            if gcs_refused_checksum(exc):
                raise TransientError(f"{self.uri}: body corrupted in transit: {exc}") from exc
            raise translate(exc, f"uploading {self.uri}") from exc
        except Exception as exc:
            raise translate(exc, f"uploading {self.uri}") from exc
        if blob.crc32c != self.crc:
            self._delete(blob.generation)
            raise TransientError(
                f"{self.uri}: stored crc32c {blob.crc32c} != local {self.crc}; deleted, re-sending"
            )

    def _resolve_412(self) -> None:
        """Count the object as uploaded if it holds our bytes; otherwise replace it next."""
        try:
            current = self.bucket.get_blob(
                self.file.name, retry=self.policy.client_retry(), timeout=self.policy.timeouts()
            )
        except Exception as exc:
            raise translate(exc, f"checking {self.uri} after 412") from exc
        if current is not None and current.crc32c == self.crc and current.size == self.file.size:
            self.notes.append(f"{self.uri}: 412, already present with matching crc32c")
            return
        self.generation = current.generation if current is not None else 0
        raise TransientError(
            f"{self.uri}: 412 and the stored object differs; replacing generation {self.generation}"
        )

    def _delete(self, generation: int) -> None:
        self.generation = 0
        try:
            self.bucket.blob(self.file.name).delete(
                if_generation_match=generation,
                retry=self.policy.client_retry(),
                timeout=self.policy.timeouts(),
            )
        except (api_exc.NotFound, api_exc.PreconditionFailed):
            pass  # gone or replaced already: the next attempt's 412 check sorts it out
        except Exception as exc:
            raise translate(exc, f"deleting corrupted {self.uri}") from exc
