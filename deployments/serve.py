"""Serve the imgbatch deployments from this process: `python -m imgbatch.deployments.serve`.

`prefect.serve` registers each deployment with the Prefect API (PREFECT_API_URL), then polls
for its runs and executes each in a subprocess here. Runs started from the UI ("Run",
"Retry"), `prefect deployment run preprocess-images/preprocess -p params='{"csv": ...}'` or a
schedule all land here. Parameters come from the run: the deployment sets no paths.

A schedule is off unless asked for, and then carries its own parameters:
    python -m imgbatch.deployments.serve --cron "0 2 * * *" \
        --params '{"csv": "/data/train.csv", "images": "/data/images", "out": "/data/out"}'
(or IMGBATCH_PREPROCESS_CRON / IMGBATCH_PREPROCESS_PARAMS). Stop with Ctrl-C or SIGTERM;
schedules are paused on shutdown.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
from collections.abc import Sequence
from typing import Any

from prefect import serve
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron

PREPROCESS_DEPLOYMENT = "preprocess"
CRON_ENV = "IMGBATCH_PREPROCESS_CRON"
PARAMS_ENV = "IMGBATCH_PREPROCESS_PARAMS"
TIMEZONE_ENV = "IMGBATCH_TIMEZONE"
REQUIRED_PARAMS = ("csv", "images", "out")
TAGS = ["imgbatch"]

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
    cron: str | None = None,
    timezone: str = "UTC",
    params: dict[str, Any] | None = None,
    only_preprocess: bool = False,
) -> list[RunnerDeployment]:
    """Every deployment this process serves; preprocess on a cron schedule if given."""
    deployments = []
    for module, attr, name in FLOWS[:1] if only_preprocess else FLOWS:
        flow = getattr(importlib.import_module(module), attr)
        schedule = None
        if cron and name == PREPROCESS_DEPLOYMENT:
            schedule = Cron(cron, timezone=timezone, parameters={"params": params or {}})
        deployments.append(
            flow.to_deployment(
                name=name,
                schedule=schedule,
                tags=TAGS,
                description=(flow.description or "").split("\n")[0],
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return deployments


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
        help=f"JSON object of flow parameters for scheduled runs (env {PARAMS_ENV})",
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
    """--params as a JSON object; a schedule needs csv, images and out in it."""
    try:
        params = json.loads(text) if text else None
    except ValueError as exc:
        p.error(f"--params is not JSON: {exc}")
    if params is not None and not isinstance(params, dict):
        p.error("--params must be a JSON object")
    missing = [k for k in REQUIRED_PARAMS if k not in (params or {})]
    if cron and missing:
        p.error(f"--cron needs --params with {', '.join(missing)}")
    return params


def main(argv: Sequence[str] | None = None) -> None:
    """Register the deployments and execute their runs until interrupted."""
    args = parse_args(argv)
    deployments = build_deployments(args.cron, args.timezone, args.params, args.only_preprocess)
    serve(*deployments, limit=args.limit, query_seconds=args.poll_seconds)


if __name__ == "__main__":
    main()
