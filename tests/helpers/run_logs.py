"""A flow run's log lines as the UI's Logs tab reads them: through the API."""

from __future__ import annotations

import logging
from uuid import UUID


def run_logs(client, run_id: UUID) -> list:
    """Every log line of the flow run (its task runs' included), oldest first."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    return client.read_logs(
        log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])),
        sort=LogSort.TIMESTAMP_ASC,
    )


def errors(logs: list) -> list[str]:
    """The messages of the ERROR (and worse) lines."""
    return [log.message for log in logs if log.level >= logging.ERROR]


def tracebacks(logs: list) -> list[str]:
    return [log.message for log in logs if "Traceback" in log.message]
