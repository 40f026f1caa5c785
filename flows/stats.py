"""The image-stats flow: exact per-channel mean/std of OUT/images.npy into run.json."""

from prefect import flow

from imgbatch.flows.naming import named
from imgbatch.flows.states import fails_cleanly
from imgbatch.output.writer_lock import output_lock
from imgbatch.params import StatsParams
from imgbatch.tasks.stats import compute_stats


@flow(name="image-stats", flow_run_name=named("stats", "out"))
@fails_cleanly
def image_stats(params: StatsParams) -> dict:
    """Statistics of OUT/images.npy's ok rows (0-255 scale)."""
    with output_lock(params.out, "image-stats (rewrites run.json)"):
        return compute_stats(params.out, params.normalize)
