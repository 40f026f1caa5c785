"""The preprocess-images flow: CSV + images root -> OUT/images.npy and friends.

Orchestration only (docs/ARCHITECTURE.md, "Data flow"): check, plan, one task per partition
not yet done, assemble when every partition is done, end Failed (the others committed)
when any partition failed.
"""

import time

from imgbatch.flows.naming import named
from imgbatch.flows.progress import completed_partitions_off_terminal, terminal_bar
from imgbatch.flows.states import fails_cleanly, failure
from imgbatch.tasks.limits import existing_limit
from imgbatch.tasks.preprocess import assemble_outputs, plan_run, preprocess_partition
from imgbatch.tasks.report import ProgressArtifact, publish_summary
from prefect import flow
from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from imgbatch.compute import parallel
from imgbatch.compute.job import Job
from imgbatch.output.ownership import claim_output, dataset_identity
from imgbatch.output.shards import split_done
from imgbatch.params import PreprocessParams
from imgbatch.pixels.spec import ImageSpec
from imgbatch.plan.images_found import check_found
from imgbatch.plan.run_plan import Plan
from imgbatch.preflight import check_preprocess

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
    t0 = time.perf_counter()
    params = check_preprocess(params)
    spec = ImageSpec(**params.pixel_params())
    dataset = dataset_identity(params.csv, params.column, params.images, spec)
    with claim_output(params.out, dataset, writer_label(), params.overwrite) as note:
        if note:
            print(note)
        plan = plan_run(params, spec)
        check_found(plan, params.images, params.min_found)
        job = Job(plan.rows_file, params.images, params.out, spec, *decoding(params))
        todo, done = split_done(params.out, plan.select(params.partitions))
        t_plan = time.perf_counter()
        results, failures = run_partitions(todo, done, job, params)
        timings = {
            "plan_seconds": round(t_plan - t0, 3),
            "partitions_seconds": round(time.perf_counter() - t_plan, 3),
        }
        return finish(params, plan, job, results, failures, timings, dataset)


def writer_label() -> str:
    """Who holds the output, as a second run on it is told."""
    return f"flow run {flow_run.name} ({flow_run.id})"


def decoding(params: PreprocessParams) -> tuple[str, int]:
    """(threads|processes, workers), resolved once per run."""
    return parallel.resolve(params.executor, params.workers)


def run_partitions(
    todo: list, done: list[dict], job: Job, params: PreprocessParams
) -> tuple[list[dict], dict[int, str]]:
    """One task run per partition still to do; (summaries of all done, reasons of failed)."""
    task = preprocess_partition.with_options(
        retries=params.retries,
        retry_delay_seconds=exponential_backoff(params.retry_delay_seconds),
    )
    limit = existing_limit(CONCURRENCY_LIMIT)
    results = [{**r, "computed": False} for r in done]
    failures: dict[int, str] = {}
    progress = ProgressArtifact(len(todo) + len(done), len(done))
    with (
        completed_partitions_off_terminal(),
        terminal_bar(len(todo) + len(done), len(done)) as bar,
    ):
        futures = {task.submit(p, job, limit): p for p in todo}
        for fut in as_completed(list(futures)):
            fut.wait()
            state = fut.state
            if state.is_completed():
                results.append(fut.result())
            else:
                failures[futures[fut].id] = reason(futures[fut], state)
            progress.advance(state.is_completed())
            bar.advance()
    return sorted(results, key=lambda r: r["partition"]), failures


def reason(part, state: State) -> str:
    """One line: the partition's rows and why it failed."""
    text, exc = failure(state)
    cause = f"{type(exc).__name__}: {text}" if exc else text
    return f"rows {part.start}-{part.stop - 1}: {cause}"[:400]


def finish(
    params: PreprocessParams,
    plan: Plan,
    job: Job,
    results: list[dict],
    failures: dict[int, str],
    timings: dict,
    dataset: dict,
) -> State:
    """Failed when a partition failed; assembled when every partition is done."""
    out = params.out
    if failures:
        first = min(failures)
        note = (
            f"{len(failures)} of {len(results) + len(failures)} partitions failed (first: "
            f"partition {first}, {failures[first]}); the others are committed; "
            "Retry (or rerun) computes only the failed ones"
        )
        publish_summary(out, results, failures, None, note)
        return Failed(message=note)
    if unassembled := others_not_done(params, plan):
        note = (
            f"{len(unassembled)} partitions outside {params.partitions} are not done; "
            "output not assembled until they are (run without partitions)"
        )
        publish_summary(out, results, {}, None, note)
        return Completed(message=note, data={"assembled": False})
    run = assemble_outputs(job, plan, params.model_dump(mode="json"), timings, dataset)
    counts = ", ".join(f"{k}={v}" for k, v in run["counts"].items())
    note = f"{run['rows']} rows -> {out}/images.npy ({counts})"
    publish_summary(out, results, {}, run, note)
    return Completed(message=note, data={"assembled": True, **run})


def others_not_done(params: PreprocessParams, plan: Plan) -> list[int]:
    """Ids of partitions this run did not choose and whose shard is not done."""
    if not params.partitions:
        return []
    chosen = set(params.partitions)
    todo, _ = split_done(params.out, [p for p in plan.partitions if p.id not in chosen])
    return [p.id for p in todo]
