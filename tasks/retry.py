"""Retry policy shared by every task: back off exponentially, retry only what may pass.

What may pass is imgbatch.errors.is_retryable (TransientError, dropped connections,
timeouts, a broken pool) plus, here in the Prefect layer, a blip of the Prefect API that a
task meets while it reports (a transport error, or a 429/5xx answer). Anything else, a bug
included, ends the task on its first attempt.
"""

from __future__ import annotations

from typing import Any

import httpx
from prefect.tasks import exponential_backoff

from imgbatch.errors import is_retryable

JITTER = 0.5
API_BUSY = (408, 429, 500, 502, 503, 504)


def retry_options(retries: int = 3, first_delay: float = 2.0) -> dict:
    """@task options every stage uses: exponential backoff with jitter, retries only for
    failures known to pass. Flows override `retries`/`retry_delay_seconds` per run."""
    return {
        "retries": retries,
        "retry_delay_seconds": exponential_backoff(first_delay),
        "retry_jitter_factor": JITTER,
        "retry_condition_fn": retry_if_transient,
    }


def may_pass(exc: BaseException) -> bool:
    """True for a failure that a retry may cure (see the module docstring)."""
    if is_retryable(exc) or isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code in API_BUSY


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """retry_condition_fn: retry the failure only when it may pass."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception:  # noqa: BLE001 - an unreadable result is not known to pass
            return False
    return isinstance(exc, BaseException) and may_pass(exc)
