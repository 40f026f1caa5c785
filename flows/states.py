"""Reading a failed Prefect state, and ending a flow on an expected failure, one way for all.

An expected failure (an ImgbatchError) is one line wherever it is read: the state's message,
the command's last line, and the run's logs in the UI (see `OneLineFailures`). A real bug
(any other exception) keeps its traceback everywhere.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from prefect.exceptions import ParameterBindError, ParameterTypeError
from prefect.states import Failed, State

from imgbatch import upstream
from imgbatch.errors import ImgbatchError

# Prefect's loggers of flow runs and task runs: what they log reaches the run's logs (the
# API) and the console; and the engine's own, which a deployment's subprocess prints.
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "prefect.engine")
PARAMETER_ERRORS = (ParameterBindError, ParameterTypeError)
# What a run whose parameters do not fit needs (a schedule added in the UI has none).
PARAMETERS_HINT = (
    "give the run its parameters in the run form or the schedule, or start serve with "
    "--params to make them the deployment's own"
)


def failure(state: State) -> tuple[str, BaseException | None]:
    """(the reason on one line, the exception when the state holds one)."""
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, BaseException):
        return one_line(exc), exc
    return " ".join((state.message or state.name).split()), None


def one_line(exc: BaseException) -> str:
    """The exception's text with its whitespace (newlines included) collapsed."""
    return " ".join(str(exc).split())


def failed_with(exc: ImgbatchError) -> State:
    """The flow's Failed state for an expected failure: the reason as its message, and the
    exception as its data, so whoever reads the state (Prefect's engine included) meets an
    ImgbatchError, not a FailedRun."""
    return Failed(message=one_line(exc), data=exc)


def fails_cleanly(fn: Callable) -> Callable:
    """An expected failure (an ImgbatchError) ends the flow run Failed with its one-line
    reason as the message, instead of an "unexpected exception" and a traceback."""
    quiet_expected_failures()

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ImgbatchError as exc:
            return failed_with(exc)

    return wrapper


class OneLineFailures(logging.Filter):
    """Prefect's lines about an expected failure, as one line without a traceback.

    - A deployment's flow run ending Failed: Prefect's engine logs "Engine execution exited
      with unexpected exception" at ERROR with the traceback of the state's exception. For
      an ImgbatchError the line becomes its one-line reason: the run's one ERROR line.
    - Parameters that do not fit the flow (none at all, from a schedule added in the UI, or
      values the model refuses): the engine's line becomes what does not fit, on one line,
      and where to give the parameters (PARAMETERS_HINT); the subprocess's last word on the
      console, with the traceback, is dropped.
    - A task run ended by an ImgbatchError: its "Task run failed with exception" line (with
      the traceback) and its "Finished in state Failed(...)" line (which names only the
      exception's type) are dropped; the flow logs one line per failed partition, and the
      run's reason says the rest.
    A logger's filter changes the record before any handler formats it, so the UI's logs
    and the console read the same line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, PARAMETER_ERRORS) and upstream.prefect_engine_exited(record):
            bound = isinstance(exc, ParameterBindError) and exc.__context__  # inspect's words
            cause = one_line(bound or exc)
            record.msg, record.args = f"the run's parameters: {cause}; {PARAMETERS_HINT}", ()
            record.exc_info, record.exc_text = None, None
            return True
        if isinstance(exc, PARAMETER_ERRORS) and upstream.prefect_execution_exited(record):
            return False  # the run's line above said it, once
        expected = isinstance(exc, ImgbatchError)
        if expected and upstream.prefect_engine_exited(record):
            record.msg, record.args = one_line(exc), ()
            record.exc_info, record.exc_text = None, None
            return True
        if expected and upstream.prefect_task_failed(record):
            return False
        ended_by = upstream.prefect_task_ended_by(record)
        return ended_by is None or ended_by not in expected_type_names()


def expected_type_names() -> set[str]:
    """The names of ImgbatchError and of every subclass defined so far."""
    names, todo = set(), [ImgbatchError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


_FILTER = OneLineFailures()


def quiet_expected_failures() -> None:
    """Put one OneLineFailures on Prefect's run loggers, for the life of the process: the
    engine's line comes after the flow function has returned."""
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, OneLineFailures) for f in logger.filters):
            logger.addFilter(_FILTER)
