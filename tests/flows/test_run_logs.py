"""A run's logs in the UI: an expected failure is one ERROR line and no traceback, a real bug
keeps its traceback.

The lines are Prefect's own, read back through the API: the engine's line of a deployment's
flow run ending Failed is made by Prefect's `run_flow` with the flow run's logger, as
`python -m prefect.engine` calls it; then real deployment runs (`serve` in a subprocess) on
an output another run holds and on a bucket that does not exist. The failed partition and
the Retry are checked in test_ui_retry.py, on its runs.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from helpers.deployments import deployment, final_run, schedule_past_day, serving, wait_idle
from helpers.run_logs import errors, run_logs, tracebacks
from prefect import flow, task
from prefect.client.schemas.schedules import CronSchedule
from prefect.settings import PREFECT_API_URL

from imgbatch import upstream
from imgbatch.errors import PermanentError, UsageError
from imgbatch.flows.states import PARAMETERS_HINT, fails_cleanly

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.timeout(180)]

EXPECTED = "the output is held by another run (held on purpose)"


@task(retries=0)
def fails_expectedly() -> None:
    raise PermanentError("partition 7 cannot be written (on purpose)")


@task(retries=0)
def has_a_bug() -> None:
    raise ZeroDivisionError("a bug (on purpose)")


@flow
@fails_cleanly
def ends_expectedly() -> None:
    fails_expectedly(return_state=True)
    raise UsageError(EXPECTED)


@flow
@fails_cleanly
def ends_in_a_bug() -> None:
    has_a_bug(return_state=True)
    raise TypeError("a bug in the flow (on purpose)")


def as_the_engine_runs(fn, made=None) -> tuple[UUID, BaseException]:
    """Run the flow as `python -m prefect.engine` does for a deployment's flow run: a flow
    run made first (unless given), then `run_flow` with that run's logger; (its id, what it
    raised)."""
    from prefect import get_client
    from prefect.flow_engine import flow_run_logger, run_flow
    from prefect.logging.handlers import APILogWorker

    if made is None:
        with get_client(sync_client=True) as client:
            made = client.create_flow_run(fn)
    with pytest.raises(Exception) as raised:
        run_flow(fn, flow_run=made, error_logger=flow_run_logger(made))
    APILogWorker.drain_all(timeout=10)
    return made.id, raised.value


def test_the_engine_line_is_the_reason_for_an_expected_failure_and_a_traceback_for_a_bug():
    from prefect import get_client

    expected_id, expected_exc = as_the_engine_runs(ends_expectedly)
    bug_id, bug_exc = as_the_engine_runs(ends_in_a_bug)
    assert isinstance(expected_exc, UsageError) and isinstance(bug_exc, TypeError)
    with get_client(sync_client=True) as client:
        expected, bug = run_logs(client, expected_id), run_logs(client, bug_id)

    # The expected failure: its reason, once, at ERROR; no traceback anywhere, and the task
    # that failed expectedly left no ERROR line of its own.
    assert errors(expected) == [EXPECTED], [(x.level, x.message) for x in expected]
    assert not tracebacks(expected)

    # The bug: Prefect's engine line, in the words upstream.py matches, with the traceback;
    # the task's bug keeps its lines (the failure and the end state) and its traceback.
    exited = [x for x in bug if x.message.startswith(upstream._PREFECT_ENGINE_EXITED)]
    assert len(exited) == 1 and exited[0].level == 40, [x.message for x in bug]
    assert "Traceback" in exited[0].message and "TypeError: a bug in the flow" in exited[0].message
    task_failed = [x for x in bug if x.message.startswith(upstream._PREFECT_TASK_FAILED)]
    assert len(task_failed) == 1 and "ZeroDivisionError: a bug" in task_failed[0].message
    assert "Traceback" in task_failed[0].message and task_failed[0].level == 40
    ended = [x for x in bug if x.message.startswith(upstream._PREFECT_TASK_ENDED_BY)]
    assert len(ended) == 1 and ended[0].task_run_id, [x.message for x in bug]
    assert ended[0].message.startswith(upstream._PREFECT_TASK_ENDED_BY + "ZeroDivisionError: ")


def test_a_run_without_parameters_is_one_error_line_saying_where_to_give_them():
    """A schedule added in the UI carries no parameters: Prefect's own line says what does
    not fit, with where to set them; no traceback (the engine's line is dropped)."""
    from prefect import get_client

    from imgbatch.flows.preprocess import preprocess_images

    run_id, raised = as_the_engine_runs(preprocess_images)
    assert type(raised).__name__ == "ParameterBindError"
    with get_client(sync_client=True) as client:
        logs = run_logs(client, run_id)
    [line] = errors(logs)
    assert line == f"the run's parameters: missing a required argument: 'params'; {PARAMETERS_HINT}"
    assert not tracebacks(logs)


def test_parameters_the_model_refuses_are_one_error_line_saying_where_to_give_them():
    from prefect import get_client

    from imgbatch.flows.preprocess import preprocess_images

    with get_client(sync_client=True) as client:
        made = client.create_flow_run(preprocess_images, parameters={"params": {"csv": "a.csv"}})
        run_id, raised = as_the_engine_runs(preprocess_images, made)
        logs = run_logs(client, run_id)
    assert type(raised).__name__ == "ParameterTypeError"
    [line] = errors(logs)
    assert line == (
        "the run's parameters: Flow run received invalid parameters: - params.out: Field "
        f"required - params.images: Field required; {PARAMETERS_HINT}"
    )
    assert not tracebacks(logs)


HOLDER = """
import sys, time
from imgbatch.output.writer_lock import output_lock
with output_lock(sys.argv[1], "an operator's run"):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def held_output(tmp_path: Path) -> Iterator[Path]:
    """An output folder whose writer lock another process holds."""
    out = tmp_path / "held"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"locked"
        yield out
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_deployment_runs_that_fail_expectedly_log_one_error_line(
    gcs, held_output: Path, make_dataset, tmp_path: Path
) -> None:
    """A held output and a bucket that does not exist: one ERROR line each (the reason, as
    the run's state says it), and a run with no parameters: one ERROR line saying where to
    give them; no traceback, in the run's logs and on serve's console."""
    from prefect import get_client

    csv, images, _ = make_dataset(4)
    base = {"csv": csv, "size": 32, "executor": "threads", "workers": 1, "retries": 0}
    cases = {
        "is being written by pid": {**base, "images": images, "out": str(held_output)},
        "does not exist": {
            **base,
            "images": f"gs://{gcs.name}-missing/images",
            "out": str(tmp_path / "out"),
        },
    }
    with (
        serving(tmp_path, "--only-preprocess") as (proc, log),
        get_client(sync_client=True) as client,
    ):
        served = deployment(client, "preprocess-images/preprocess", proc, log)
        for words, fields in cases.items():
            made = client.create_flow_run_from_deployment(served.id, parameters={"params": fields})
            run = final_run(client, made.id, proc, log)
            wait_idle(proc.pid)  # the engine's last line is logged after the final state
            logs = run_logs(client, made.id)
            assert run.state.is_failed() and words in run.state.message, run.state
            assert errors(logs) == [run.state.message], [(x.level, x.message) for x in logs]
            assert not tracebacks(logs), words
        # A schedule added in the UI to a deployment with no parameters of its own: the
        # scheduler's step for one past day makes its run, with no parameters at all.
        client.create_deployment_schedules(served.id, [(CronSchedule(cron="0 3 * * *"), True)])
        [added] = [x for x in client.read_deployment(served.id).schedules if not x.slug]
        # The session's deployment is shared: its schedule goes once its run has ended (a
        # schedule deleted earlier takes its scheduled runs with it).
        try:
            [made] = schedule_past_day(client, PREFECT_API_URL.value(), served.id)
            run = final_run(client, made.id, proc, log)
            wait_idle(proc.pid)
        finally:
            client.delete_deployment_schedule(served.id, added.id)
        logs = run_logs(client, made.id)
        assert not run.state.is_completed(), run.state
        assert errors(logs) == [
            f"the run's parameters: missing a required argument: 'params'; {PARAMETERS_HINT}"
        ], [(x.level, x.message) for x in logs]
        console = log.read_text()
    assert "Traceback" not in console, console[-3000:]
