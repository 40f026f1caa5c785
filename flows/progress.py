"""A progress bar of partitions on an interactive terminal; nothing anywhere else."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


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
