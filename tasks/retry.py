"""Retry policy shared by every task: back off exponentially, never retry permanent errors."""

from __future__ import annotations

from typing import Any

from imgbatch.errors import is_retryable

JITTER = 0.5


def backoff(first_delay: float, retries: int) -> list[float]:
    """Delays before each retry: first_delay, 2x, 4x, ... (Prefect adds jitter on top)."""
    return [first_delay * 2**i for i in range(retries)]


def retry_options(retries: int = 3, first_delay: float = 2.0) -> dict:
    """@task options every stage uses: exponential backoff with jitter, no retry of
    permanent errors. Flows override `retries`/`retry_delay_seconds` per run."""
    return {
        "retries": retries,
        "retry_delay_seconds": backoff(first_delay, retries),
        "retry_jitter_factor": JITTER,
        "retry_condition_fn": retry_unless_permanent,
    }


def retry_unless_permanent(task: Any, task_run: Any, state: Any) -> bool:
    """retry_condition_fn: a PermanentError or UsageError ends the task at once."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception:  # noqa: BLE001 - unreadable result: let the retry policy decide
            return True
    return not isinstance(exc, BaseException) or is_retryable(exc)
