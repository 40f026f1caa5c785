"""Reading a failed Prefect state, and ending a flow on an expected failure, one way for all."""

from __future__ import annotations

import functools
from collections.abc import Callable

from prefect.states import Failed, State

from imgbatch.errors import ImgbatchError


def failure(state: State) -> tuple[str, BaseException | None]:
    """(the reason on one line, the exception when the state holds one)."""
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, BaseException):
        return " ".join(str(exc).split()), exc
    return " ".join((state.message or state.name).split()), None


def fails_cleanly(fn: Callable) -> Callable:
    """An expected failure (an ImgbatchError) ends the flow run Failed with its one-line
    reason as the message, instead of an "unexpected exception" and a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ImgbatchError as exc:
            return Failed(message=" ".join(str(exc).split()), data=exc)

    return wrapper
