"""Tasks of the preprocess flow: plan, one partition, assemble; each calls one core function.

A partition that is already done gets no task run at all (the shard's done-marker is the one
record of "done", docs/ARCHITECTURE.md "Reruns"), so nothing is cached or persisted by
Prefect here, and partition tasks carry no tag (Prefect takes a tag-concurrency lease, API
calls, for every run of a tagged task): a task run costs only its state changes.
"""

from __future__ import annotations

import os

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from imgbatch.compute.partition import PartitionSettings, run_partition
from imgbatch.layout import IMAGES, images_digest
from imgbatch.params import PreprocessParams
from imgbatch.pipeline import assemble_outputs as assemble_step
from imgbatch.pipeline import plan_rows
from imgbatch.pixels.spec import ImageSpec
from imgbatch.plan.run_plan import PartitionPlan, Plan
from imgbatch.tasks.limits import slot
from imgbatch.tasks.retry import retry_options


@task(name="plan", cache_policy=NO_CACHE, **retry_options(3, 2.0))
def plan_run(params: PreprocessParams, spec: ImageSpec) -> Plan:
    return plan_rows(params, spec)


@task(
    name="preprocess-partition",
    task_run_name="partition-{part.id}",
    cache_policy=NO_CACHE,
    **retry_options(3, 2.0),
)
def preprocess_partition(
    part: PartitionPlan, settings: PartitionSettings, limit: str | None
) -> dict:
    """One shard; holds a slot of the global concurrency limit `limit` when it exists."""
    with slot(limit):
        return run_partition(part, settings)


@task(name="assemble", cache_policy=NO_CACHE)
def assemble_outputs(
    settings: PartitionSettings, plan: Plan, params: dict, timings: dict, dataset: dict
) -> dict:
    """The outputs, with a line in the run's logs before and after (what was written)."""
    logger = get_run_logger()
    logger.info("assembling %d partitions into %s", len(plan.partitions), settings.out)
    run = assemble_step(settings, plan, params, timings, dataset)
    logger.info(
        "wrote %s: %d rows, shape %s, %s, %s",
        os.path.join(settings.out, IMAGES),
        run["rows"],
        tuple(run["shape"]),
        images_digest(run),
        ", ".join(f"{k}={v}" for k, v in sorted(run["counts"].items())),
    )
    return run
