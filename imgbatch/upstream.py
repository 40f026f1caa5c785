"""Conditions other libraries signal only in a message's words, recognised in one place.

Where a library offers a type, an errno or an attribute, the code uses that instead. These
are what remains: each function names the library and the text it matches, and
tests/unit/test_upstream.py (tests/flows/test_upstream_prefect.py for Prefect) makes the
library itself produce the condition, so a reworded message fails a test, not a run.
Standard library only: every stage may import this module, Prefect-free.
"""

from __future__ import annotations

import logging
import tarfile

# concurrent.futures: Executor.submit after shutdown() raises a plain RuntimeError
# ("cannot schedule new futures after shutdown", or "... after interpreter shutdown").
_POOL_SHUT_DOWN = "cannot schedule new futures after"

# numpy: ndarray.tofile (np.save to a real file) reports a short fwrite as
# OSError("N requested and M written") with no errno.
_NUMPY_SHORT_WRITE = " requested and "

# tarfile: a tar stream that ends inside a member raises ReadError("unexpected end of data"),
# the same type as a bad header or checksum.
_TAR_ENDED_EARLY = "unexpected end of data"

# GCS: an upload whose body does not match the crc32c we sent is refused with 400
# 'Provided CRC32C "..." doesn't match calculated CRC32C "...".'
_GCS_CRC32C = "crc32c"

# wget (C locale): `wget --continue` with a local file at least as large as the remote one
# says "The file is already fully retrieved; nothing to do." and exits 0.
_WGET_ALREADY_RETRIEVED = "already fully retrieved"

# wget (C locale): a failed try ends with the line "Retrying." when another follows, "Giving
# up." when it was the last; a refused connection prints "Connecting to HOST:PORT...
# failed: Connection refused." and a name that does not resolve "wget: unable to resolve
# host address 'HOST'".
# Each ends wget with exit status 4 ("network failure"), which alone cannot tell them apart.
_WGET_TRY_FAILED = ("Retrying.", "Giving up.")
_WGET_REFUSED = "failed: Connection refused."
_WGET_UNRESOLVED = "unable to resolve host address"

# Prefect: each task run logs "Finished in state Completed()" (at INFO) when it ends well.
_PREFECT_TASK_COMPLETED = "Finished in state Completed("

# Prefect: lines a flow or task run logs that repeat what a command's own last line says
# ("Finished in state Failed('...')", "Crash detected! Execution was interrupted..."), and
# the flow run's "View at http://.../runs/flow-run/..." link.
_PREFECT_RUN_ENDED = ("Finished in state Failed(", "Finished in state Crashed(", "Crash detected!")
_PREFECT_RUN_LINK = "View at "

# Prefect: a task run whose exception ends it after its retries (or with none allowed) logs
# "Task run failed with exception: <repr>" (" - Retries are exhausted" may follow) at ERROR,
# with the traceback; a retried one logs the same words at INFO, without it. One its
# retry_condition_fn refused logs nothing of the kind. Either way the run's last line is
# "Finished in state Failed('Task run encountered an exception <Type name>: <text>')", at
# ERROR, no traceback, the type not otherwise attached.
_PREFECT_TASK_FAILED = "Task run failed with exception: "
_PREFECT_TASK_ENDED_BY = "Finished in state Failed('Task run encountered an exception "

# Prefect: `python -m prefect.engine` (how a deployment's runner starts a flow run) raises the
# final state's exception when the run ended Failed, and logs it on the flow run's logger at
# ERROR, with the traceback: "Engine execution exited with unexpected exception".
_PREFECT_ENGINE_EXITED = "Engine execution exited with unexpected exception"
# prefect/engine.py, the deployment subprocess's last word (its console only) when run_flow
# raised before the run had a final state: "Execution of flow run '<id>' exited with ...".
_PREFECT_EXECUTION_EXITED = ("Execution of flow run '", "' exited with unexpected exception")


def pool_shut_down(exc: BaseException) -> bool:
    """True when a concurrent.futures pool refused work because it was shut down."""
    return type(exc) is RuntimeError and str(exc).startswith(_POOL_SHUT_DOWN)


def numpy_short_write(exc: BaseException) -> bool:
    """True when numpy wrote fewer bytes than asked (a full disk, a file size limit)."""
    return isinstance(exc, OSError) and exc.errno is None and _NUMPY_SHORT_WRITE in str(exc)


def tar_ended_early(exc: BaseException) -> bool:
    """True when tarfile met the end of its input inside the archive (a cut-short file)."""
    return isinstance(exc, tarfile.ReadError) and str(exc) == _TAR_ENDED_EARLY


def gcs_refused_checksum(exc: BaseException) -> bool:
    """True when GCS answered 400 because the body it got does not match our crc32c."""
    return getattr(exc, "code", None) == 400 and _GCS_CRC32C in str(exc).lower()


def wget_kept_local_file(line: str) -> bool:
    """True for wget's line saying it kept the local file and fetched nothing."""
    return _WGET_ALREADY_RETRIEVED in line


def wget_try_failed(line: str) -> bool | None:
    """For wget's line ending a failed try: True when another try follows, False when wget
    gives up; None for any other line."""
    text = line.strip()
    return text == _WGET_TRY_FAILED[0] if text in _WGET_TRY_FAILED else None


def wget_refused(line: str) -> bool:
    """True for wget's line saying the server refused the connection."""
    return line.rstrip().endswith(_WGET_REFUSED)


def wget_unresolved(line: str) -> bool:
    """True for wget's line saying the host name does not resolve."""
    return _WGET_UNRESOLVED in line


def prefect_task_completed(record: logging.LogRecord) -> bool:
    """True for Prefect's "Finished in state Completed()" line of a task run."""
    return (
        record.name.startswith("prefect.task_runs")
        and record.levelno < logging.WARNING
        and record.getMessage().startswith(_PREFECT_TASK_COMPLETED)
    )


def _prefect_run_record(record: logging.LogRecord) -> bool:
    return record.name.startswith(("prefect.flow_runs", "prefect.task_runs"))


def prefect_run_ended_badly(record: logging.LogRecord) -> bool:
    """True for Prefect's line saying a flow or task run ended Failed or Crashed."""
    return _prefect_run_record(record) and record.getMessage().startswith(_PREFECT_RUN_ENDED)


def prefect_run_link(record: logging.LogRecord) -> bool:
    """True for Prefect's "View at <UI address>" line of a flow run."""
    return _prefect_run_record(record) and record.getMessage().startswith(_PREFECT_RUN_LINK)


def prefect_task_failed(record: logging.LogRecord) -> bool:
    """True for Prefect's ERROR line (traceback attached) of a task run its exception ended."""
    return (
        record.name.startswith("prefect.task_runs")
        and record.levelno >= logging.ERROR
        and record.getMessage().startswith(_PREFECT_TASK_FAILED)
    )


def prefect_task_ended_by(record: logging.LogRecord) -> str | None:
    """The name of the exception's type, on Prefect's last line of a task run an exception
    ended; None for any other line."""
    text = record.getMessage()
    if not (
        record.name.startswith("prefect.task_runs") and text.startswith(_PREFECT_TASK_ENDED_BY)
    ):
        return None
    return text[len(_PREFECT_TASK_ENDED_BY) :].split(":", 1)[0]


def prefect_engine_exited(record: logging.LogRecord) -> bool:
    """True for the ERROR line (traceback attached) Prefect's engine logs for a deployment's
    flow run that ended Failed."""
    return record.name.startswith("prefect.flow_runs") and record.getMessage().startswith(
        _PREFECT_ENGINE_EXITED
    )


def prefect_execution_exited(record: logging.LogRecord) -> bool:
    """True for the line (traceback attached) `python -m prefect.engine` logs on its console
    when the flow run raised before it had a final state."""
    text = record.getMessage()
    start, end = _PREFECT_EXECUTION_EXITED
    return record.name == "prefect.engine" and text.startswith(start) and text.endswith(end)
