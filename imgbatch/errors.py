"""Error types shared by every stage.

Per image, failures are values (a status row); per partition or per file they are these
exceptions, and their type decides whether the orchestrator retries.
"""


class ImgbatchError(Exception):
    """Base class for every error imgbatch raises on purpose."""


class UsageError(ImgbatchError):
    """A bad argument or input: fix the call, retrying cannot help."""


class PermanentError(ImgbatchError):
    """A failure that will happen again on retry (404, bad archive, damaged shard)."""


class TransientError(ImgbatchError):
    """A failure that may pass on retry (network drop, 503, timeout)."""


def is_retryable(exc: BaseException) -> bool:
    """True unless the error is known to be permanent or a usage error."""
    return not isinstance(exc, (PermanentError, UsageError))


class WriteError(PermanentError):
    """An output could not be written (disk full, permission denied, ...): retrying in a few
    seconds cannot help; fix the cause, then rerun (or press Retry)."""
