"""Error types shared by every stage.

Per image, failures are values (a status row); per partition or per file they are these
exceptions, and their type decides whether the orchestrator retries.
"""

import errno
from concurrent.futures import BrokenExecutor


class ImgbatchError(Exception):
    """Base class for every error imgbatch raises on purpose."""


class UsageError(ImgbatchError):
    """A bad argument or input: fix the call, retrying cannot help."""


class PermanentError(ImgbatchError):
    """A failure that will happen again on retry (404, bad archive, damaged shard)."""


class TransientError(ImgbatchError):
    """A failure that may pass on retry (network drop, 503, timeout)."""


class WriteError(PermanentError):
    """An output could not be written (disk full, permission denied, ...): retrying in a few
    seconds cannot help; fix the cause, then rerun (or press Retry)."""


# Outside imgbatch's own types, the failures known to pass: a dropped or refused connection
# and a timeout (ConnectionError, TimeoutError), a pool whose worker died (BrokenExecutor:
# BrokenProcessPool, BrokenThreadPool), and these errnos of a flaky disk or network mount.
TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    TransientError,
    ConnectionError,
    TimeoutError,
    BrokenExecutor,
)
TRANSIENT_ERRNOS = frozenset(
    {
        errno.EAGAIN,
        errno.EBUSY,
        errno.EINTR,
        errno.EIO,
        errno.ESTALE,
        errno.ENETDOWN,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.EHOSTUNREACH,
    }
)


def is_retryable(exc: BaseException) -> bool:
    """True only for failures known to pass on retry; anything else (a PermanentError, a
    UsageError, a TypeError in our code) surfaces on its first attempt."""
    if isinstance(exc, TRANSIENT_TYPES):
        return True
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS
