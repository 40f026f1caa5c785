"""Serve the imgbatch deployments from this process: `python -m imgbatch.deployments.serve`.

`prefect.serve` registers each deployment with the Prefect API (PREFECT_API_URL), then polls
for its runs and executes each in a subprocess here. Runs started from the UI ("Run",
"Retry"), `prefect deployment run preprocess-images/preprocess -p params='{"csv": ...}'` or a
schedule all land here.

`--params` (csv, images, out, ...) become the preprocess deployment's own parameters: the UI's
run form starts from them, and a schedule added in the UI ("+ Schedule") or with `prefect
deployment schedule create` (which carries no parameters) runs with them. `--cron` adds one
schedule of serve's own (its slug starts with SERVE_SCHEDULE), replaced on every start and
removed when serve starts without it; schedules made in the UI or CLI are kept:
    python -m imgbatch.deployments.serve --cron "0 2 * * *" \
        --params '{"csv": "/data/train.csv", "images": "/data/images", "out": "/data/out"}'
(or IMGBATCH_PREPROCESS_CRON / IMGBATCH_PREPROCESS_PARAMS). Stop with Ctrl-C or SIGTERM;
the deployments (and so their schedules) are paused on shutdown and resume at the next start.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
from collections.abc import Sequence
from typing import Any

from prefect import get_client, serve
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import EntrypointType, RunnerDeployment

PREPROCESS_DEPLOYMENT = "preprocess"
CRON_ENV = "IMGBATCH_PREPROCESS_CRON"
PARAMS_ENV = "IMGBATCH_PREPROCESS_PARAMS"
TIMEZONE_ENV = "IMGBATCH_TIMEZONE"
REQUIRED_PARAMS = ("csv", "images", "out")
TAGS = ["imgbatch"]
# The slug of the one schedule serve owns (from --cron) starts so; any other schedule is the
# user's. The UI shows a schedule's slug in place of its cron text, so the slug carries the
# cron and its time zone (the UI's own cron text leaves the zone out).
SERVE_SCHEDULE = "imgbatch serve --cron"

# Every deployed flow: (module, flow function, deployment name). deployments/prefect.yaml
# lists the same flows under "<name>-pool" names, so the two never take over each other's.
FLOWS: tuple[tuple[str, str, str], ...] = (
    ("imgbatch.flows.preprocess", "preprocess_images", PREPROCESS_DEPLOYMENT),
    ("imgbatch.flows.prepare", "prepare_dataset", "prepare"),
    ("imgbatch.flows.download", "download_archives", "download"),
    ("imgbatch.flows.upload", "upload_tree", "upload"),
    ("imgbatch.flows.stats", "image_stats", "stats"),
)


def build_deployments(
    params: dict[str, Any] | None = None, only_preprocess: bool = False
) -> list[RunnerDeployment]:
    """Every deployment this process serves; `params` are preprocess's own parameters.

    None of them sends a schedule list when it registers: Prefect 3.9 would replace the
    deployment's schedules with it, deleting those added in the UI or CLI (see
    docs/decisions/schedules-kept-by-serve.md); serve's own schedule is `sync_schedule`'s.
    """
    deployments = []
    for module, attr, name in FLOWS[:1] if only_preprocess else FLOWS:
        flow = getattr(importlib.import_module(module), attr)
        deployment = flow.to_deployment(
            name=name,
            parameters={"params": params} if params and name == PREPROCESS_DEPLOYMENT else None,
            tags=TAGS,
            description=flow.description,
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        deployment.model_fields_set.discard("schedules")
        deployments.append(deployment)
    return deployments


def sync_schedule(deployment: RunnerDeployment, cron: str | None, timezone: str) -> None:
    """Register `deployment`, then make serve's own schedule (slug 'SERVE_SCHEDULE CRON ZONE')
    match --cron: replaced when given, removed when not. Other schedules are left alone."""
    deployment.apply()
    with get_client(sync_client=True) as client:
        found = client.read_deployment_by_name(deployment.full_name)
        for old in found.schedules:
            if (old.slug or "").startswith(SERVE_SCHEDULE):
                client.delete_deployment_schedule(found.id, old.id)
        if cron:
            schedule = CronSchedule(cron=cron, timezone=timezone)
            slug = f"{SERVE_SCHEDULE} {cron} {timezone}"
            own = DeploymentScheduleCreate(schedule=schedule, active=True, slug=slug)
            client.create_deployment_schedules(found.id, [own])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Flags, with environment fallbacks; a schedule needs csv, images and out."""
    p = argparse.ArgumentParser(
        prog="python -m imgbatch.deployments.serve",
        description="Serve the imgbatch deployments against PREFECT_API_URL.",
    )
    p.add_argument(
        "--cron",
        default=os.environ.get(CRON_ENV) or None,
        help=f"schedule preprocess runs, e.g. '0 2 * * *' (env {CRON_ENV}; off by default)",
    )
    p.add_argument(
        "--timezone",
        default=os.environ.get(TIMEZONE_ENV) or "UTC",
        help=f"IANA timezone of --cron (env {TIMEZONE_ENV}; default UTC)",
    )
    p.add_argument(
        "--params",
        default=os.environ.get(PARAMS_ENV) or None,
        help="JSON object: the preprocess deployment's own parameters, used by its schedules "
        f"(UI and CLI ones too) and shown in its run form (env {PARAMS_ENV})",
    )
    p.add_argument(
        "--only-preprocess", action="store_true", help="serve only preprocess-images/preprocess"
    )
    p.add_argument(
        "--limit", type=int, default=None, help="at most this many flow runs at once here"
    )
    p.add_argument(
        "--poll-seconds",
        type=float,
        default=None,
        help="seconds between looks for new runs (default PREFECT_RUNNER_POLL_FREQUENCY)",
    )
    args = p.parse_args(argv)
    args.params = schedule_params(p, args.params, args.cron)
    return args


def schedule_params(p: argparse.ArgumentParser, text: str | None, cron: str | None) -> dict | None:
    """--params as a JSON object with csv, images and out (a run needs them); --cron needs it."""
    try:
        params = json.loads(text) if text else None
    except ValueError as exc:
        p.error(f"--params is not JSON: {exc}")
    if params is not None and not isinstance(params, dict):
        p.error("--params must be a JSON object")
    missing = [k for k in REQUIRED_PARAMS if k not in (params or {})]
    if (cron or params is not None) and missing:
        p.error(f"{'--cron needs ' if cron else ''}--params with {', '.join(missing)}")
    return params


def main(argv: Sequence[str] | None = None) -> None:
    """Register the deployments and execute their runs until interrupted."""
    args = parse_args(argv)
    deployments = build_deployments(args.params, args.only_preprocess)
    sync_schedule(deployments[0], args.cron, args.timezone)
    serve(*deployments, limit=args.limit, query_seconds=args.poll_seconds)


if __name__ == "__main__":
    main()
