"""What a run says while its partitions run: no line per completed partition anywhere; in
the run's logs a count every LOG_SECONDS and one line per failed partition; on an
interactive terminal a bar."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_run_logger

from imgbatch.upstream import prefect_task_completed

# How often the run's logs get a "partitions: D of T done" line (and once at the end).
LOG_SECONDS = 15.0
# The `extra` key of a line meant for the run's logs only: the console has the bar, and the
# command's last line says how the run ended.
LOGS_ONLY = "imgbatch_logs_only"


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


class PartitionLines:
    """The run's log lines about its partitions: a count at most every LOG_SECONDS and at
    the last one, and one line per failed partition (each its reason)."""

    def __init__(self, total: int, reused: int) -> None:
        self.total, self.reused, self.done, self.failed = total, reused, reused, 0
        self.logger = get_run_logger()
        self.last = time.monotonic()

    def advance(self, failure: str | None = None) -> None:
        """One more partition ended: well, or failed for the reason `failure`."""
        if failure is not None:
            self.failed += 1
            self.logger.warning(failure, extra={LOGS_ONLY: True})
        else:
            self.done += 1
        now, last = time.monotonic(), self.done + self.failed >= self.total
        if last or now - self.last >= LOG_SECONDS:
            self.last = now
            self.logger.info(
                "partitions: %d of %d done (%d reused), %d failed",
                self.done,
                self.total,
                self.reused,
                self.failed,
                extra={LOGS_ONLY: True},
            )


class _NotCompletedTaskRuns(logging.Filter):
    """Drops Prefect's "Finished in state Completed()" line of each task run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not prefect_task_completed(record)


class _NotLogsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, LOGS_ONLY, False)


@contextmanager
def partitions_counted_not_listed() -> Iterator[None]:
    """While partitions run, no task run's "Finished in state Completed()" line is logged:
    1,000 partitions would give the run's logs (and the terminal, where rich renders each
    in the flow process) 1,000 identical lines. PartitionLines counts them instead; its
    lines stay off the console, which has the bar. Retries, warnings and failures still
    show. A logger's filter, so neither the API's handler nor the console gets the line.
    (On a Dask cluster the task runs log in the workers, where this does not reach.)
    """
    task_runs = logging.getLogger("prefect.task_runs")
    completed = _NotCompletedTaskRuns()
    task_runs.addFilter(completed)
    try:
        with console_filter(_NotLogsOnly()):
            yield
    finally:
        task_runs.removeFilter(completed)


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
