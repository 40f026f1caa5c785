"""Tasks of the preprocess flow: plan, one partition, assemble; each calls one core function."""

from __future__ import annotations

import hashlib
import os

from prefect import task

from imgbatch.assemble import assemble
from imgbatch.partition import run_partition
from imgbatch.plan import PartitionPlan, Plan, make_plan
from imgbatch.spec import ImageSpec
from imgbatch.storage import open_storage
from tasks.limits import slot
from tasks.retry import retrying


def partition_cache_key(context, parameters: dict) -> str:
    """Output folder + partition fingerprint.

    The flow runs partitions whose shard is not done with refresh_cache=True, so a deleted
    or damaged shard is recomputed (and re-cached), never served from Prefect's cache; done
    ones show in the UI as Cached.
    """
    part: PartitionPlan = parameters["part"]
    out = os.path.abspath(parameters["out"])
    return "imgbatch-" + hashlib.sha256(f"{out}\n{part.fingerprint}".encode()).hexdigest()


@task(
    name="plan",
    **retrying(3, 2.0),
)
def plan_run(
    csv: str, column: str, images: str, spec: ImageSpec, partition_size: int, out: str
) -> Plan:
    return make_plan(csv, column, open_storage(images), spec, partition_size, out)


@task(
    name="preprocess-partition",
    task_run_name="partition-{part.id}",
    **retrying(3, 2.0),
    cache_key_fn=partition_cache_key,
    persist_result=True,
    tags=["imgbatch"],
)
def preprocess_partition(
    part: PartitionPlan,
    manifest: str,
    images: str,
    spec: ImageSpec,
    out: str,
    executor: str,
    workers: int | None,
    limit: str | None,
) -> dict:
    """One shard; holds a slot of the global concurrency limit `limit` when it exists."""
    with slot(limit):
        return run_partition(part, manifest, open_storage(images), spec, out, executor, workers)


@task(name="assemble")
def assemble_outputs(
    out: str,
    parts: list[PartitionPlan],
    n_rows: int,
    spec: ImageSpec,
    params: dict,
    timings: dict,
) -> dict:
    return assemble(out, parts, n_rows, spec, params, timings)
