"""Schedules and run names the Prefect way, against a real server and a real `serve`: a schedule
added as the CLI and the UI add one (no parameters) survives a restart of serve and its runs use
the deployment's own parameters (serve --params); a name the user gives a run is kept, and runs
named by imgbatch on one output differ."""

from __future__ import annotations

import json
import re

import pytest
from helpers.deployments import deployment, final_run, schedule_past_day, serving, tail, wait_for

from imgbatch.deployments.serve import SERVE_SCHEDULE

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.timeout(300)]
DEPLOYMENT = "preprocess-images/preprocess"


def slugs(client, dep_id) -> list:
    return sorted(str(s.slug) for s in client.read_deployment(dep_id).schedules)


def test_ui_schedule_survives_restart_and_runs_with_the_deployment_parameters(
    tmp_path, make_dataset
):
    from prefect import get_client
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.settings import PREFECT_API_URL

    csv, images, _ = make_dataset(6)
    out = tmp_path / "out-64"
    defaults = {"csv": csv, "images": images, "out": str(out), "partition_size": 3}
    args = ("--only-preprocess", "--params", json.dumps(defaults))
    cron = ("--cron", "0 4 * * *", "--timezone", "Europe/Berlin")
    with get_client(sync_client=True) as c:
        with serving(tmp_path, *args, *cron) as (proc, log):
            dep = deployment(c, DEPLOYMENT, proc, log)
            own = f"{SERVE_SCHEDULE} 0 4 * * * Europe/Berlin"  # the UI shows it, zone included
            wait_for("serve's schedule", lambda: slugs(c, dep.id) == [own], proc, log, 60)
            # What `prefect deployment schedule create preprocess-images/preprocess --cron ...`
            # sends (and the UI's "+ Schedule": no parameters, no slug).
            ui = CronSchedule(cron="0 3 * * *", timezone="America/New_York")
            c.create_deployment_schedules(dep.id, [(ui, True)])

        with serving(tmp_path, *args) as (proc, log):
            # Started without --cron: serve's own schedule goes, the user's stays.
            wait_for("the restart", lambda: slugs(c, dep.id) == ["None"], proc, log, 60)
            dep = c.read_deployment(dep.id)
            assert not dep.paused and dep.parameters == {"params": defaults}
            (kept,) = dep.schedules
            assert kept.schedule.cron == "0 3 * * *" and kept.parameters == {}
            assert kept.schedule.timezone == "America/New_York"

            # The scheduler's own step for one past day (a backfill): one run of that schedule.
            (scheduled,) = schedule_past_day(c, PREFECT_API_URL.value(), dep.id)
            run = final_run(c, scheduled.id, proc, log)
            assert run.state.is_completed(), f"{run.state!r}\n{tail(log)}"
            assert run.parameters == {"params": defaults}
            assert re.fullmatch(r"preprocess out-64 [0-9a-f]{6}", run.name), run.name
            assert (out / "images.npy").exists()

            # The UI's run form (or the API) with a name typed in, then one without.
            typed = c.create_flow_run_from_deployment(dep.id, name="check after upgrade")
            typed = final_run(c, typed.id, proc, log)
            assert typed.state.is_completed() and typed.name == "check after upgrade"
            # The run form's own suggestion (the UI fills the name field with one like this).
            suggested = c.create_flow_run_from_deployment(dep.id, name="zeta4-chomsky")
            other = final_run(c, suggested.id, proc, log)
            assert other.state.is_completed(), f"{other.state!r}\n{tail(log)}"
            assert other.name.startswith("preprocess out-64 ") and other.name != run.name
        c.delete_deployment_schedule(dep.id, kept.id)
