"""Task wrapper for the exact channel statistics (numba, streaming)."""

from __future__ import annotations

from prefect import task

from imgbatch.output.stats import update_run_stats


@task(name="channel-stats")
def compute_stats(out: str, normalize: bool) -> dict:
    return update_run_stats(out, normalize)
