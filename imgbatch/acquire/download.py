"""Fetch archives with wget: resume over a flaky link, then verify before the file gets its name.

wget does the network part well (resume with Range, bounded retries, timeouts), so the
runner only builds its argv in one place and reads what it prints. What wget cannot tell us
is whether the bytes on disk are right: `wget -c` exits 0 with "already fully retrieved"
when a stale or oversized partial file is in the way, and a remote that changed between
attempts gets spliced. So the file is written as NAME.part, checked against the size the
server announced and the sha256 when given, and only then renamed to NAME. A spliced or
stale partial that fails the check is deleted and fetched once more from byte zero.

An archive name (x.tar.gz, ...) is also checked as an archive before it gets its name: magic
bytes first (an HTML error page, JSON, XML or an empty file is named as such, with the
Content-Type wget printed), then the whole stream (imgbatch.acquire.archive.verify_archive). A file
that fails is moved aside as NAME.bad, never kept as NAME, so a rerun downloads it again.
Retrying: a truncated archive is transient only when the server announced no size (wget
could not tell a dropped connection from the end); when the announced size arrived in full,
or the bytes are a page instead of an archive, the server sends this very file every time,
so the error is permanent for this run (a later rerun still downloads again). A passed check
is recorded beside the folder (imgbatch.acquire.archive.record_verified), so extraction and reruns
do not read a 35 GB archive again. A server that never answered is permanent too, and said
in one line: a refused port and an unknown host name at once, a silent one after
FIRST_CONTACT_TRIES tries (imgbatch.timeouts bounds each).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from imgbatch.acquire.archive import (
    DamagedArchive,
    describe_non_archive,
    expected_format,
    is_archive_name,
    record_verified,
    verified_record,
    verify_archive,
)
from imgbatch.atomic_files import file_digest
from imgbatch.errors import PermanentError, TransientError, UsageError
from imgbatch.timeouts import CONNECT_TIMEOUT, DNS_TIMEOUT, FIRST_CONTACT_TRIES, READ_TIMEOUT
from imgbatch.upstream import wget_kept_local_file, wget_refused, wget_try_failed, wget_unresolved

# Statuses that may pass on their own: wget retries them itself, and so may the orchestrator.
RETRY_HTTP_STATUSES = (408, 429, 500, 502, 503, 504)
SCHEMES = ("http", "https", "ftp")

# A runner executes a wget argv, hands every stderr line to the callback, returns the exit code.
LineSink = Callable[[str], None]
Runner = Callable[[list[str], LineSink], int]


@dataclass(frozen=True)
class WgetOptions:
    """What wget is told about retrying. Defaults suit multi-GB archives over a flaky link;
    the timeouts are imgbatch.timeouts'."""

    tries: int = 10  # attempts inside one wget run, each resuming where the last stopped
    waitretry: float = 10.0  # wget waits 1 s, 2 s, ... up to this between its attempts
    read_timeout: float = READ_TIMEOUT  # a silent connection is dropped (and resumed)
    connect_timeout: float = CONNECT_TIMEOUT
    dns_timeout: float = DNS_TIMEOUT
    executable: str = "wget"


def wget_argv(url: str, part: Path, options: WgetOptions) -> list[str]:
    """The one place the wget command line is built.

    No --retry-connrefused: a refused connection is a wrong port or no server, answered at
    once (download() says so) rather than after every try.
    """
    return [
        options.executable,
        "--continue",
        f"--tries={options.tries}",
        "--retry-on-http-error=" + ",".join(map(str, RETRY_HTTP_STATUSES)),
        f"--waitretry={options.waitretry:g}",
        f"--read-timeout={options.read_timeout:g}",
        f"--connect-timeout={options.connect_timeout:g}",
        f"--dns-timeout={options.dns_timeout:g}",
        "--server-response",  # headers give the total size to verify against
        "--progress=dot:mega",
        f"--output-document={part}",
        "--",
        url,
    ]


_MISSING = "{} is missing: install wget (Debian/Ubuntu: apt-get install wget)"


def run_wget(argv: list[str], on_line: LineSink) -> int:
    """Run wget as a subprocess, streaming its stderr line by line (C locale: parseable)."""
    env = {**os.environ, "LC_ALL": "C"}
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=env,
        )
    except FileNotFoundError:
        raise UsageError(_MISSING.format(argv[0])) from None
    with proc:
        try:
            for line in proc.stderr:
                on_line(line.rstrip("\n"))
        except BaseException:
            proc.kill()
            raise
        return proc.wait()


def require_wget(executable: str = "wget") -> str:
    """Path of the wget binary, or a UsageError saying how to install it."""
    path = shutil.which(executable)
    if path is None:
        raise UsageError(_MISSING.format(executable))
    return path


@dataclass(frozen=True)
class Downloaded:
    """A verified file. `responses` lists the HTTP statuses seen: resumes show up as 206."""

    url: str
    path: str
    size: int
    sha256: str
    wget_runs: int  # 1 normally; 2 when a stale or spliced partial was restarted from zero
    responses: tuple[int, ...] = ()
    skipped: bool = False  # already present and verified: nothing was fetched
    members: int | None = None  # an archive: files in it (None for other downloads)
    member_bytes: int | None = None  # an archive: their total size


def file_name(url: str) -> str:
    """The local name for a URL: the last path segment, or a UsageError."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.netloc:
        raise UsageError(f"not a downloadable URL (need {'/'.join(SCHEMES)}): {url!r}")
    name = PurePosixPath(unquote(parts.path)).name
    if name in ("", ".", "..") or "\0" in name:
        raise UsageError(f"URL has no file name to save it under: {url!r}")
    return name


def check_sha256(value: str) -> str:
    value = value.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise UsageError(f"not a sha256 (64 hex digits): {value!r}")
    return value


def check_requests(
    urls: Sequence[str], sha256: Sequence[str] | None = None
) -> list[tuple[str, str, str | None]]:
    """(url, file name, sha256) per URL; raises UsageError before any work is done."""
    if not urls:
        raise UsageError("no URL given")
    if sha256 and len(sha256) != len(urls):
        raise UsageError(f"{len(sha256)} sha256 values for {len(urls)} URLs: give one per URL")
    sums = [check_sha256(s) for s in sha256] if sha256 else [None] * len(urls)
    names = [file_name(u) for u in urls]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"several URLs would be saved as the same file: {', '.join(dupes)}")
    return list(zip(urls, names, sums, strict=True))


def ensure_writable(dest: Path) -> None:
    """Fail before any network traffic when the destination cannot take files."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=dest, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise PermanentError(f"cannot write to {dest}: {exc.strerror or exc}") from exc


_STATUS = re.compile(r"^\s+HTTP/[\d.]+ (\d{3})\s*(.*)$")
_LENGTH = re.compile(r"^\s+Content-Length:\s*(\d+)\s*$", re.IGNORECASE)
_TYPE = re.compile(r"^\s+Content-Type:\s*(\S[^;]*)", re.IGNORECASE)
_RANGE_TOTAL = re.compile(r"^\s+Content-Range:\s*bytes\s+(?:\d+-\d+|\*)/(\d+)", re.IGNORECASE)
_PROGRESS = re.compile(r"^\s*\d+[KMG] [.,]")
_NOTABLE = ("Retrying", "Giving up", "ERROR", "already fully retrieved", "saved [")
_FAILURE = re.compile(r"fail|error|unable|cannot|denied|refused|timed out", re.IGNORECASE)
_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (\([^)]*\) - )?")


@dataclass
class _WgetLog:
    """What one wget run said: HTTP statuses, the announced total size, the last lines.

    Progress lines go to `sink` at most once per `interval` seconds (the last one is kept
    for the end); lines about retries and errors go through at once: there are few of them.
    """

    sink: LineSink | None
    interval: float
    statuses: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    total: int | None = None
    content_type: str | None = None  # of the last response
    already_retrieved: bool = False
    refused: bool = False  # the server refused a connection
    unresolved: bool = False  # the host name did not resolve
    unanswered: int = 0  # failed tries before any HTTP answer
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    _last_emit: float = float("-inf")
    _pending: str | None = None

    def feed(self, line: str) -> None:
        if m := _STATUS.match(line):
            self.statuses.append(int(m.group(1)))
            self.reasons.append(m.group(2))
            self.content_type = None
        elif m := _TYPE.match(line):
            self.content_type = m.group(1).strip()
        else:
            # The whole size: Content-Length of a 200, the "/TOTAL" of a 206 or 416.
            status = self.statuses[-1] if self.statuses else None
            m = _LENGTH.match(line) if status == 200 else _RANGE_TOTAL.match(line)
            if m and status in (200, 206, 416):
                self.total = int(m.group(1))
        if wget_kept_local_file(line):
            self.already_retrieved = True
        self.refused |= wget_refused(line)
        self.unresolved |= wget_unresolved(line)
        again = wget_try_failed(line)
        if again is not None and not self.statuses:
            self.unanswered += 1
            if again and self.unanswered >= FIRST_CONTACT_TRIES:
                raise _NoAnswer  # ends wget: a server silent this often is no blip
        if _PROGRESS.match(line):
            self._progress(line.strip())
            return
        if line.strip():
            self.tail.append(line.strip())
        if self.sink and any(word in line for word in _NOTABLE):
            self.sink(_STAMP.sub("", line.strip()))

    def _progress(self, line: str) -> None:
        now = time.monotonic()
        if now - self._last_emit >= self.interval:
            self._last_emit, self._pending = now, None
            if self.sink:
                self.sink(line)
        else:
            self._pending = line

    def close(self) -> None:
        if self._pending and self.sink:
            self.sink(self._pending)
        self._pending = None

    def detail(self) -> str:
        """The last line that explains a failure, without wget's timestamp."""
        for line in reversed(self.tail):
            if _FAILURE.search(line):
                return _STAMP.sub("", line)
        return self.tail[-1] if self.tail else "no output"


class _NoAnswer(Exception):
    """FIRST_CONTACT_TRIES tries and no HTTP answer: raised from the line callback, which
    ends wget (run_wget kills it)."""


def classify_exit(code: int, http_status: int | None) -> type[TransientError | PermanentError]:
    """wget exit status (+ last HTTP status) -> the error type that decides retrying.

    4 network failure: transient. 8 server error: transient for 408/429/5xx, permanent for
    404/403/410 and the like. 3 file I/O: permanent (disk full or unwritable). 7 protocol
    error: transient. Anything else (bad option, TLS, auth) will fail the same way again.
    """
    if code == 8 and http_status is not None:
        retry = http_status in RETRY_HTTP_STATUSES or (http_status >= 500 and http_status != 501)
        return TransientError if retry else PermanentError
    return TransientError if code in (4, 7) else PermanentError


def _exit_error(url: str, code: int | None, log: _WgetLog, part: Path, wait: float) -> Exception:
    """The error for a wget run that failed (`code` None: ended after _NoAnswer)."""
    if not log.statuses and (err := _no_answer_error(url, log, wait)) is not None:
        return err
    status = log.statuses[-1] if log.statuses else None
    code = 4 if code is None else code
    kind = classify_exit(code, status)
    if code == 8 and status is not None:
        reason = f"HTTP {status} {log.reasons[-1]}".strip()
    elif code == 4 and status is not None and status >= 400:  # --retry-on-http-error ran out
        reason = f"HTTP {status} {log.reasons[-1]}, on every one of {len(log.statuses)} tries"
    elif code == 4:
        reason = f"network failure: {log.detail()}"
    elif code == 3:
        reason = f"cannot write {part}: {log.detail()}"
    else:
        reason = f"wget exited with status {code}: {log.detail()}"
    return kind(f"{url}: {reason}")


def _no_answer_error(url: str, log: _WgetLog, wait: float) -> PermanentError | None:
    """The one-line error for a server that never answered: no name, no listener, silence.

    Permanent: a retry within this run meets the same host; the message says what to check.
    """
    parts = urlsplit(url)
    host = parts.hostname or parts.netloc
    if log.unresolved:
        return PermanentError(f"{url}: the host name {host!r} does not resolve: is it right?")
    port = parts.port or {"https": 443, "ftp": 21}.get(parts.scheme, 80)
    if log.refused:
        return PermanentError(
            f"{url}: connection refused by {host}:{port}: is the URL's port right? (a retry "
            "helps only once a server listens there)"
        )
    if log.unanswered:
        tries = "1 try" if log.unanswered == 1 else f"{log.unanswered} tries"
        return PermanentError(
            f"{url}: the server {host}:{port} did not answer within {wait:g} s ({tries}): "
            "check the URL and the network"
        )
    return None


def _verify(part: Path, log: _WgetLog, sha256: str | None) -> tuple[str | None, str]:
    """(problem or None, sha256 of the file)."""
    if not part.exists():
        return "wget reported success but wrote no file", ""
    size = part.stat().st_size
    if log.total is not None and size != log.total:
        return f"local file has {size} bytes, the server announced {log.total}", ""
    if log.total is None and log.already_retrieved and sha256 is None:
        return "wget kept an old partial file and the server gave no size to check it", ""
    digest = file_digest(part)[0]
    if sha256 is not None and digest != sha256:
        return f"sha256 {digest} does not match the expected {sha256}", digest
    return None, digest


class _NotAnArchive(Exception):
    """The downloaded bytes are no whole archive; `kind` decides whether retrying helps."""

    def __init__(self, problem: str, kind: type[TransientError | PermanentError]) -> None:
        super().__init__(problem)
        self.problem, self.kind = problem, kind


def _check_archive(path: Path, name: str, log: _WgetLog | None) -> tuple[int, int]:
    """(files, bytes) of a whole archive, or _NotAnArchive saying what arrived instead."""
    kind = expected_format(name)
    sender = "the server sent" if log else f"{path} is"
    if what := describe_non_archive(path, log.content_type if log else None):
        raise _NotAnArchive(f"{sender} {what}, not a {kind} archive", PermanentError)
    try:
        return verify_archive(path)
    except DamagedArchive as exc:
        state = "truncated" if exc.truncated else "damaged"
        cut_unnoticed = exc.truncated and log is not None and log.total is None
        raise _NotAnArchive(
            f"{sender} a {state} {kind} archive ({exc.detail})",
            TransientError if cut_unnoticed else PermanentError,
        ) from exc
    except PermanentError as exc:  # a refused member
        raise _NotAnArchive(str(exc).removeprefix(f"{path}: "), PermanentError) from exc


def _set_aside(path: Path, final: Path) -> Path:
    """Move a file that is no archive to NAME.bad (replacing an older one), out of the way."""
    bad = final.with_name(final.name + ".bad")
    os.replace(path, bad)
    return bad


def _record(final: Path, digest: str, counts: tuple[int, int], note: LineSink | None) -> None:
    """Record the passed archive check; without it extraction only checks the archive again."""
    try:
        record_verified(final, digest, *counts)
    except OSError as exc:
        if note:
            note(f"could not record the archive check of {final} ({exc}); extraction re-reads it")


def _existing(
    url: str, final: Path, sha256: str | None, note: LineSink | None
) -> Downloaded | None:
    """The file already at NAME when it can stand as the download; else None (fetch it).

    An archive with a recorded check is trusted by size and mtime (not read again); one
    without is checked, and set aside as NAME.bad when it is no whole archive.
    """
    if not final.is_file():
        return None
    record = verified_record(final) if is_archive_name(final.name) else None
    if record is not None:
        counts = record["files"], record["bytes"]
        digest = record["sha256"]
    elif is_archive_name(final.name):
        try:
            counts = _check_archive(final, final.name, None)
        except _NotAnArchive as exc:
            bad = _set_aside(final, final)
            if note:
                note(f"{exc.problem}; moved to {bad}, downloading again")
            return None
        digest = file_digest(final)[0]
        _record(final, digest, counts, note)
    else:
        counts, digest = (None, None), file_digest(final)[0]
    if sha256 not in (None, digest):
        return None
    return Downloaded(url, str(final), final.stat().st_size, digest, 0, (), True, *counts)


def download(
    url: str,
    dest_dir: str | os.PathLike,
    *,
    sha256: str | None = None,
    options: WgetOptions = WgetOptions(),
    on_progress: LineSink | None = None,
    progress_interval: float = 10.0,
    runner: Runner = run_wget,
) -> Downloaded:
    """Download `url` into dest_dir/NAME, verified; resume a NAME.part left by an earlier run.

    Raises TransientError (worth retrying: network, 5xx/429, a remote that keeps changing,
    an archive cut short with no size announced), PermanentError (404/403, checksum of a
    clean download wrong, unwritable destination, an archive name that received an HTML
    page or a damaged archive: kept as NAME.bad) or UsageError (bad URL or sha256, wget
    missing). A file already at NAME is kept when it matches `sha256` (or when no sha256 is
    given) and, for an archive name, is a whole archive; otherwise it is fetched again.
    """
    [(url, name, sha256)] = check_requests([url], [sha256] if sha256 else None)
    dest = Path(dest_dir)
    ensure_writable(dest)
    final = dest / name
    if (got := _existing(url, final, sha256, on_progress)) is not None:
        return got

    def fetch(part: Path) -> _WgetLog:
        log = _WgetLog(on_progress, progress_interval)
        try:
            code: int | None = runner(wget_argv(url, part, options), log.feed)
        except _NoAnswer:
            code = None
        log.close()
        if code != 0:
            if part.exists() and part.stat().st_size == 0:
                part.unlink()  # wget opens the output file even for a 404
            raise _exit_error(url, code, log, part, options.read_timeout)
        return log

    return _fetch(url, final, sha256, fetch)


def _fetch(
    url: str, final: Path, sha256: str | None, fetch: Callable[[Path], _WgetLog]
) -> Downloaded:
    """Run wget (twice at most: once more from zero after a spliced partial), verify, rename."""
    part, responses = final.with_name(final.name + ".part"), []
    for run in (1, 2):
        had_partial = part.exists() and part.stat().st_size > 0
        log = fetch(part)
        responses += log.statuses
        problem, digest = _verify(part, log, sha256)
        counts, kind = (None, None), None  # kind: set when the archive check failed
        if problem is None and is_archive_name(final.name):
            try:
                counts = _check_archive(part, final.name, log)
            except _NotAnArchive as exc:
                problem, kind = exc.problem, exc.kind
        if problem is None:
            os.replace(part, final)
            if counts[0] is not None:
                _record(final, digest, counts, log.sink)
            size = final.stat().st_size
            return Downloaded(url, str(final), size, digest, run, tuple(responses), False, *counts)
        if not (had_partial or any(s in (206, 416) for s in log.statuses)):
            # One clean stream from byte zero disagrees: the remote is not the expected file.
            raise _clean_stream_error(url, part, final, problem, kind)
        part.unlink(missing_ok=True)
        if log.sink:
            log.sink(f"{problem}; discarding the partial file and restarting from zero")
    raise TransientError(f"{url}: {problem}, again after a restart from zero")


def _clean_stream_error(
    url: str, part: Path, final: Path, problem: str, kind: type[Exception] | None
) -> Exception:
    """The error for a whole download that failed its check; the file is not kept as NAME.

    `kind` is None for a size or sha256 mismatch (the file is deleted), else the archive
    check failed and the file is set aside as NAME.bad for a look.
    """
    if kind is not None and part.exists():
        return kind(f"{url}: {problem}; kept as {_set_aside(part, final)}")
    part.unlink(missing_ok=True)
    return PermanentError(f"{url}: {problem}")
