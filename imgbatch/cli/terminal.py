"""What Prefect prints on a command's terminal: the command's own last line says how the run
ended, so Prefect's lines that repeat it are left to the UI's logs.

While a command's flow runs, the console handlers drop: the error lines of an expected
failure (an ImgbatchError: a traceback of one is no news to anyone), the "Finished in state
Failed/Crashed" and "Crash detected!" lines, and, when the command's own temporary server
serves no UI, the "View at" link to it. A real bug (any other exception) keeps its traceback.
Prefect's events worker is drained before the last line (drain_events), so its "Still
processing items" warnings never follow it.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager

from imgbatch import upstream
from imgbatch.errors import ImgbatchError

DRAIN_SECONDS = 5.0


class _Quiet(logging.Filter):
    def __init__(self, link: bool) -> None:
        super().__init__()
        self.link = link

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ImgbatchError):
            return False
        if upstream.prefect_run_link(record):
            return self.link
        return not upstream.prefect_run_ended_badly(record)


def quiet_console(link: bool) -> AbstractContextManager:
    """Prefect's console lines while a command runs its flow; `link`: keep "View at" lines."""
    from imgbatch.flows.progress import console_filter

    return console_filter(_Quiet(link))


def drain_events() -> None:
    """Send Prefect's queued events now (bounded), so no warning follows the last line."""
    from prefect.events.worker import EventsWorker

    logging.getLogger(EventsWorker.__name__).setLevel(logging.ERROR)  # its "Still processing"
    EventsWorker.drain_all(timeout=DRAIN_SECONDS)
