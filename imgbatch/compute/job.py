"""What every partition of one run shares, resolved once at the start of the run."""

from __future__ import annotations

from dataclasses import dataclass

from imgbatch.compute.partition import run_partition
from imgbatch.pixels.spec import ImageSpec
from imgbatch.plan.run_plan import PartitionPlan
from imgbatch.storage.base import open_storage


@dataclass(frozen=True)
class Job:
    """Small and picklable: handed to every partition task (and Dask worker) as is."""

    rows_file: str
    images: str
    out: str
    spec: ImageSpec
    executor: str  # "threads" or "processes", resolved from "auto"
    workers: int


def run_job_partition(part: PartitionPlan, job: Job) -> dict:
    """Compute (or find done) one partition of the job."""
    storage = open_storage(job.images)
    return run_partition(part, job.rows_file, storage, job.spec, job.out, job.executor, job.workers)
