"""The terminal during partitions: a bar on an interactive terminal, no line per partition."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from imgbatch.upstream import prefect_task_completed


class _NoBar:
    def advance(self) -> None:
        pass


class _Bar:
    def __init__(self, progress, task) -> None:
        self.progress, self.task = progress, task

    def advance(self) -> None:
        self.progress.advance(self.task)


@contextmanager
def terminal_bar(total: int, already: int) -> Iterator[_Bar | _NoBar]:
    """A rich bar counting partitions (starting at those already done) when stderr is a tty."""
    if not sys.stderr.isatty():
        yield _NoBar()
        return
    from rich.progress import Progress

    with Progress(transient=False) as progress:
        yield _Bar(progress, progress.add_task("partitions", total=total, completed=already))


class _NotCompletedTaskRuns(logging.Filter):
    """Drops Prefect's "Finished in state Completed()" line of each task run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not prefect_task_completed(record)


@contextmanager
def completed_partitions_off_terminal() -> Iterator[None]:
    """Each completed partition's line goes to the UI's logs, not to the terminal.

    1,000 partitions would print 1,000 lines there, each rendered by rich in the flow
    process (README, "Run it on your own data"). Retries, warnings, failures and the flow's
    own lines still show; the bar counts the partitions.
    """
    with console_filter(_NotCompletedTaskRuns()):
        yield


@contextmanager
def console_filter(quiet: logging.Filter) -> Iterator[None]:
    """`quiet` on each of Prefect's console handlers for the block (its API handler, the
    UI's logs, is left alone)."""
    import prefect.main  # noqa: F401  (sets up Prefect's logging, console handlers included)
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *map(logging.getLogger, ("prefect", "prefect.flow_runs"))]
    found = {id(h): h for lg in loggers for h in lg.handlers}
    consoles = [h for h in found.values() if isinstance(h, PrefectConsoleHandler)]
    for handler in consoles:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in consoles:
            handler.removeFilter(quiet)
