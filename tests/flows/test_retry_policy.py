"""Which failures Prefect retries, counted on a real Prefect server: only the ones known to
pass. A bug (a TypeError in our code) surfaces on its first attempt, not after three."""

from __future__ import annotations

import errno
from uuid import UUID

import pytest
from prefect import flow, get_client, task
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from imgbatch.errors import PermanentError, TransientError, UsageError, WriteError
from imgbatch.tasks.retry import retry_options

pytestmark = pytest.mark.usefixtures("prefect_server")

RETRIES = 2


@task(**retry_options(RETRIES, 0.0))
def failing(make: type[BaseException]) -> None:
    raise make("boom")


@flow
def run_failing(make: type[BaseException]) -> None:
    failing(make)


def attempts(flow_run_id: UUID) -> int:
    """How many times the server saw the task run start."""
    with get_client(sync_client=True) as client:
        [run] = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return run.run_count


def attempts_of(make: type[BaseException]) -> int:
    state = run_failing(make, return_state=True)
    assert state.is_failed()
    return attempts(state.state_details.flow_run_id)


@pytest.mark.parametrize("make", [TypeError, KeyError, ValueError, PermanentError, UsageError])
def test_a_bug_or_a_permanent_error_runs_once(make):
    assert attempts_of(make) == 1


def test_a_write_error_runs_once():
    assert attempts_of(WriteError) == 1


@pytest.mark.parametrize("make", [TransientError, ConnectionResetError, TimeoutError])
def test_a_transient_error_is_retried(make):
    assert attempts_of(make) == 1 + RETRIES


class FlakyDisk(OSError):
    """What a read from a failing disk or a dropped network mount raises."""

    def __init__(self, _: str) -> None:
        super().__init__(errno.EIO, "Input/output error")


def test_a_flaky_disk_is_retried_and_a_missing_file_is_not():
    assert attempts_of(FlakyDisk) == 1 + RETRIES
    assert attempts_of(FileNotFoundError) == 1
