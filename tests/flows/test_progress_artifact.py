"""The progress artifact on a real Prefect server: quick steps cost few API calls, and the
last step always shows, so the UI never ends at a stale figure."""

from __future__ import annotations

import pytest
from prefect import flow, get_client

from imgbatch.tasks.progress import ThrottledProgress

pytestmark = pytest.mark.usefixtures("prefect_server")


def shown(artifact_id) -> tuple[float, str]:
    with get_client(sync_client=True) as client:
        artifact = client.read_artifacts()
    [mine] = [a for a in artifact if a.id == artifact_id]
    return mine.data, mine.description


@flow
def steps(n: int, seconds: float, last: bool):
    bar = ThrottledProgress(0.0, "starting", seconds)
    for i in range(1, n + 1):
        bar.update(100.0 * i / n, f"{i} of {n}", last=last and i == n)
    return bar.id


def test_quick_steps_show_the_first_then_wait_out_the_interval():
    assert shown(steps(50, 60.0, last=False)) == (2.0, "1 of 50")


def test_the_last_step_always_shows():
    assert shown(steps(50, 60.0, last=True)) == (100.0, "50 of 50")
