"""The preprocess-images flow: CSV + images root -> OUT/images.npy and friends.

Orchestration only (docs/ARCHITECTURE.md, "Data flow"): the run's steps are
imgbatch.pipeline's; this flow maps the partitions still to do onto one task each (on this
machine's threads, or on a Dask cluster when the parameters name one), publishes progress
and the summary, and ends Failed (the others committed) when any partition failed.
"""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import partial

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect.states import Completed, State
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from imgbatch.errors import TransientError
from imgbatch.flows.naming import named
from imgbatch.flows.progress import PartitionLines, partitions_counted_not_listed, terminal_bar
from imgbatch.flows.states import failed_with, fails_cleanly, failure
from imgbatch.params import PreprocessParams
from imgbatch.pipeline import PartitionsFailed, PreprocessRun, preprocess_run
from imgbatch.plan.run_plan import PartitionPlan
from imgbatch.tasks.limits import existing_limit
from imgbatch.tasks.preprocess import assemble_outputs, plan_run, preprocess_partition
from imgbatch.tasks.report import ProgressArtifact, publish_summary

# Partitions in flight at once; they share one decode pool, so this only keeps it fed.
PARTITIONS_IN_FLIGHT = 8
# A Prefect global concurrency limit of this name, when it exists, caps partitions across all
# flow runs (a scheduled run and a UI rerun): `prefect gcl create imgbatch-partitions --limit 4`.
CONCURRENCY_LIMIT = "imgbatch-partitions"


@flow(
    name="preprocess-images",
    flow_run_name=named("preprocess", "out"),
    task_runner=ThreadPoolTaskRunner(max_workers=PARTITIONS_IN_FLIGHT),
    log_prints=True,
)
@fails_cleanly
def preprocess_images(params: PreprocessParams) -> State:
    """Standardize every image named by the CSV into one row-aligned uint8 array."""
    with preprocess_run(params, writer_label(), plan_run, assemble_outputs) as run:
        if run.recovered:
            print(run.recovered)
        if run.plan.note:  # e.g. finished shards recomputed: Pillow was upgraded
            print(run.plan.note)
        get_run_logger().info(
            "planned %d partitions (%d rows in the CSV): %d already done, %d to compute",
            run.total,
            run.plan.n_rows,
            len(run.done),
            len(run.todo),
        )
        progress = ProgressArtifact(run.total, len(run.done))
        outcome = run.finish(partial(run_partitions, progress=progress))
        publish_summary(
            run.params.out, outcome.results, outcome.failures, outcome.run, outcome.note, progress
        )
    if outcome.failures:
        return failed_with(PartitionsFailed(outcome.note))
    if outcome.run is None:
        return Completed(message=outcome.note, data={"assembled": False})
    return Completed(
        message=outcome.note, data={"assembled": True, **outcome.run, "results": outcome.results}
    )


def writer_label() -> str:
    """Who holds the output, as a second run on it is told."""
    return f"flow run {flow_run.name} ({flow_run.id})"


def partition_runner(params: PreprocessParams) -> TaskRunner:
    """Where partition tasks run: this machine's threads, or the Dask cluster at
    params.dask_address. Chosen per run (a deployment run's parameters included), so the
    runner is entered here rather than fixed in the flow's decorator."""
    if params.dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=params.dask_address)
    return ThreadPoolTaskRunner(max_workers=PARTITIONS_IN_FLIGHT)


def run_partitions(
    run: PreprocessRun, progress: ProgressArtifact
) -> tuple[list[dict], dict[int, str]]:
    """One task run per partition still to do; (their summaries, reasons of the failed)."""
    params = run.params
    task = preprocess_partition.with_options(
        retries=params.retries,
        retry_delay_seconds=exponential_backoff(params.retry_delay_seconds),
    )
    limit = existing_limit(CONCURRENCY_LIMIT)
    computed: list[dict] = []
    failures: dict[int, str] = {}
    lines = PartitionLines(run.total, len(run.done))
    with (
        partitions_counted_not_listed(),
        terminal_bar(run.total, len(run.done)) as bar,
        abandoned_on_interrupt(partition_runner(params)) as runner,
    ):
        futures = submit_all(runner, task, run, limit)
        for fut in as_completed(list(futures)):
            fut.wait()
            state = fut.state
            part = futures[fut]
            if state.is_completed():
                computed.append(fut.result())
                lines.advance()
            else:
                failures[part.id] = reason(part, state)
                lines.advance(f"partition {part.id} failed: {failures[part.id]}")
            progress.advance(state.is_completed())
            bar.advance()
    return computed, failures


@contextmanager
def abandoned_on_interrupt(runner: TaskRunner) -> Iterator[TaskRunner]:
    """`runner` for the block, left without its exit on Ctrl-C: that exit waits for every
    partition in flight, seconds to minutes, while the command is about to end anyway (a
    partition commits atomically or not at all, so abandoning one loses only its work)."""
    with ExitStack() as stack:
        stack.enter_context(runner)
        try:
            yield runner
        except KeyboardInterrupt:
            stack.pop_all()
            raise


def submit_all(runner: TaskRunner, task, run: PreprocessRun, limit) -> dict:
    """One future per partition still to do. On Dask the first submit connects to the
    scheduler: an address nobody answers at is the user's to fix, said in one line."""
    try:
        return {
            runner.submit(task, {"part": p, "settings": run.settings, "limit": limit}): p
            for p in run.todo
        }
    except OSError as exc:
        if not run.params.dask_address:
            raise
        raise TransientError(
            f"cannot reach the Dask scheduler at --dask-address {run.params.dask_address} "
            f"({exc}); check the address, or leave it out to run on this machine"
        ) from None


def reason(part: PartitionPlan, state: State) -> str:
    """One line: the partition's rows and why it failed."""
    text, exc = failure(state)
    cause = f"{type(exc).__name__}: {text}" if exc else text
    return f"rows {part.start}-{part.stop - 1}: {cause}"[:400]
