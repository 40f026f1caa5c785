"""Reading a failed Prefect state once, the same way for every flow and command."""

from __future__ import annotations

from prefect.states import State


def failure(state: State) -> tuple[str, BaseException | None]:
    """(the reason on one line, the exception when the state holds one)."""
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, BaseException):
        return " ".join(str(exc).split()), exc
    return " ".join((state.message or state.name).split()), None
