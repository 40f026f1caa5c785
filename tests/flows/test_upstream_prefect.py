"""The Prefect messages imgbatch.upstream recognises, logged by real flow and task runs: when
Prefect rewords one, this fails instead of the terminal filling with lines it repeats."""

from __future__ import annotations

import logging

import pytest
from prefect import flow, get_run_logger, task

from imgbatch import upstream

pytestmark = pytest.mark.usefixtures("prefect_server")


@task
def says_hello() -> None:
    get_run_logger().info("hello")


@task
def fails() -> None:
    raise ValueError("no")


@flow
def two_tasks() -> None:
    says_hello()
    fails(return_state=True)


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def records_of_two_tasks() -> Keep:
    """What Prefect logs while two_tasks runs."""
    keep = Keep()
    logger = logging.getLogger("prefect")
    logger.addHandler(keep)
    try:
        two_tasks()
    finally:
        logger.removeHandler(keep)
    return keep


def test_a_completed_task_runs_line_is_recognised_and_nothing_else():
    keep = records_of_two_tasks()
    recognised = [r for r in keep.records if upstream.prefect_task_completed(r)]
    assert [r.getMessage() for r in recognised] == ["Finished in state Completed()"]
    assert recognised[0].task_run_name.startswith("says_hello")
    failed = [r for r in keep.records if r.getMessage().startswith("Finished in state Failed")]
    assert failed and not any(upstream.prefect_task_completed(r) for r in failed)


def test_a_failed_runs_line_and_the_runs_link_are_recognised():
    keep = records_of_two_tasks()
    ended = [r.getMessage() for r in keep.records if upstream.prefect_run_ended_badly(r)]
    assert len(ended) == 1 and ended[0].startswith("Finished in state Failed("), ended
    links = [r.getMessage() for r in keep.records if upstream.prefect_run_link(r)]
    assert len(links) == 1 and "/runs/flow-run/" in links[0], links
