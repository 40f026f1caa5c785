"""The preprocess_images flow: CSV + images root -> OUT/images.npy and friends.

Orchestration only: plan, map one task per partition, track progress, assemble when every
partition is done, end Failed (with the others committed) when any partition failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import nullcontext

from prefect import flow, unmapped
from prefect.futures import as_completed
from prefect.states import Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner

from flows.cli import check_retries, report_failure
from flows.states import failure
from imgbatch.assemble import missing_partitions
from imgbatch.errors import UsageError
from imgbatch.manifest import (
    DEFAULT_COLUMN,
    DEFAULT_PARTITION_SIZE,
    check_csv,
    parse_partition_ids,
)
from imgbatch.parallel import EXECUTOR_KINDS, resolve
from imgbatch.shards import done_record
from imgbatch.spec import RESIZE_MODES, ImageSpec, parse_background
from imgbatch.storage import open_storage
from tasks.limits import existing_limit
from tasks.preprocess import assemble_outputs, plan_run, preprocess_partition
from tasks.report import ProgressArtifact, publish_summary
from tasks.retry import backoff

# Partitions in flight at once; they share one decode pool, so this only keeps it fed.
PARTITIONS_IN_FLIGHT = 8
# A Prefect global concurrency limit of this name, when it exists, caps partitions across all
# flow runs (a scheduled run and a UI rerun): `prefect gcl create imgbatch-partitions --limit 4`.
CONCURRENCY_LIMIT = "imgbatch-partitions"


def terminal_bar():
    """A rich progress bar on an interactive terminal, nothing otherwise."""
    if not sys.stderr.isatty():
        return nullcontext(None)
    from rich.progress import Progress

    return Progress(transient=False)


@flow(
    name="preprocess-images",
    task_runner=ThreadPoolTaskRunner(max_workers=PARTITIONS_IN_FLIGHT),
    log_prints=True,
)
def preprocess_images(
    csv: str,
    images: str,
    out: str,
    column: str = DEFAULT_COLUMN,
    size: int = 64,
    partition_size: int = DEFAULT_PARTITION_SIZE,
    workers: int | None = None,
    executor: str = "auto",
    resize_mode: str = "stretch",
    background: tuple[int, int, int] = (255, 255, 255),
    partitions: list[int] | None = None,
    retries: int = 3,
    retry_delay_seconds: float = 2.0,
) -> State:
    """Standardize every image named by the CSV into one row-aligned uint8 array."""
    t0 = time.perf_counter()
    spec = ImageSpec(size, resize_mode, tuple(background))
    resolve(executor, workers)
    out = os.path.abspath(out)
    plan = plan_run(csv, column, images, spec, partition_size, out)
    chosen = plan.select(partitions)
    t_plan = time.perf_counter()
    task = preprocess_partition.with_options(
        retries=retries, retry_delay_seconds=backoff(retry_delay_seconds, retries)
    )
    finished = {p.id for p in chosen if done_record(out, p.id, p.fingerprint) is not None}
    todo = [p for p in chosen if p.id not in finished]
    done = [p for p in chosen if p.id in finished]
    shared = [unmapped(x) for x in (plan.manifest, images, spec, out, executor, workers)]
    shared.append(unmapped(existing_limit(CONCURRENCY_LIMIT)))
    futures = task.with_options(refresh_cache=True).map(todo, *shared) + task.map(done, *shared)
    part_of = {id(f): p for f, p in zip(futures, todo + done, strict=True)}
    results, failures = [], {}
    progress = ProgressArtifact(len(chosen))
    with terminal_bar() as bar:
        bar_task = bar.add_task("partitions", total=len(chosen)) if bar else None
        for fut in as_completed(futures):
            fut.wait()
            state = fut.state
            if state.is_completed():
                results.append({**fut.result(), "cached": state.name == "Cached"})
            else:
                failures[part_of[id(fut)].id] = _reason(state)
            progress.advance()
            if bar:
                bar.advance(bar_task)
    results.sort(key=lambda r: r["partition"])
    timings = {
        "plan_seconds": round(t_plan - t0, 3),
        "partitions_seconds": round(time.perf_counter() - t_plan, 3),
    }
    if failures:
        ids = sorted(failures)
        first = failures[ids[0]]
        note = (
            f"{len(failures)} of {len(chosen)} partitions failed (first: partition {ids[0]}: "
            f"{first}); the others are committed; rerun to compute only the failed ones"
        )
        publish_summary(out, results, failures, None, note)
        return Failed(message=note)
    chosen_ids = {p.id for p in chosen}
    missing = missing_partitions(out, [p for p in plan.partitions if p.id not in chosen_ids])
    if missing:
        note = (
            f"{len(plan.partitions) - len(missing)} of {len(plan.partitions)} partitions done; "
            f"output not assembled until the other {len(missing)} are (run without --partitions)"
        )
        publish_summary(out, results, {}, None, note)
        return Completed(message=note, data={"assembled": False, "missing": missing})
    params = {
        "csv": os.path.abspath(csv),
        "images": images,
        "column": column,
        "partition_size": partition_size,
        "executor": executor,
        "workers": workers,
        **spec.to_dict(),
    }
    run = assemble_outputs(out, plan.partitions, plan.n_rows, spec, params, timings)
    note = f"{run['rows']} rows -> {out}/images.npy"
    publish_summary(out, results, {}, run, note)
    return Completed(message=note, data={"assembled": True, **run})


def _reason(state: State) -> str:
    text, exc = failure(state)
    return (f"{type(exc).__name__}: {text}" if exc else text)[:300]


def add_preprocess_options(p: argparse.ArgumentParser, images: bool = True) -> None:
    """The preprocess flow's parameters as CLI options (shared with `imgbatch prepare`)."""
    p.add_argument("--csv", required=True, help="CSV manifest, one row per image")
    if images:
        p.add_argument("--images", required=True, help="images root: a folder or gs://B/P")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--column", default=DEFAULT_COLUMN, help="CSV column with image paths")
    p.add_argument("--size", type=int, default=64, help="output side S (images are S x S x 3)")
    p.add_argument("--partition-size", type=int, default=DEFAULT_PARTITION_SIZE)
    p.add_argument("--workers", type=int, default=None, help="decode workers (default: cores)")
    p.add_argument("--executor", choices=EXECUTOR_KINDS, default="auto")
    p.add_argument("--resize-mode", choices=RESIZE_MODES, default="stretch")
    p.add_argument("--background", default="255,255,255", help="alpha background R,G,B")
    p.add_argument("--partitions", default=None, help="only these partitions, e.g. 3,7 or 0-4")
    p.add_argument("--retries", type=int, default=3, help="Prefect retries per partition")


def checked_preprocess_params(args: argparse.Namespace) -> dict:
    """Every option checked before any work (UsageError); the flow's keyword arguments."""
    spec = ImageSpec(args.size, args.resize_mode, parse_background(args.background))
    if args.partition_size <= 0:
        raise UsageError(f"--partition-size must be positive, got {args.partition_size}")
    check_retries(args.retries)
    check_csv(args.csv, args.column)
    resolve(args.executor, args.workers)
    return {
        "column": args.column,
        "size": spec.size,
        "partition_size": args.partition_size,
        "workers": args.workers,
        "executor": args.executor,
        "resize_mode": spec.resize_mode,
        "background": spec.background,
        "partitions": parse_partition_ids(args.partitions) if args.partitions else None,
        "retries": args.retries,
    }


def report_result(state: State, out: str) -> int:
    """Print what a completed preprocess run produced; exit code 0."""
    result = state.result()
    if isinstance(result, State):
        result = result.result()
    print(state.message)
    if result.get("assembled"):
        counts = ", ".join(f"{k}={v}" for k, v in result["counts"].items())
        print(f"images.npy {tuple(result['shape'])} sha256 {result['images_sha256'][:16]}...")
        print(f"rows by status: {counts}; details in {out}/index.parquet")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preprocess",
        help="standardize every image named by a CSV into OUT/images.npy",
        description="Run the preprocess-images flow (against PREFECT_API_URL when set, "
        "else Prefect's embedded local mode).",
    )
    add_preprocess_options(p)
    p.add_argument(
        "--dask-address",
        default=None,
        help="run partitions on an existing Dask cluster (tcp://host:8786) via prefect-dask; "
        "--workers is then the decode threads per Dask worker",
    )
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Check every argument before any work, run the flow, print the result."""
    params = checked_preprocess_params(args)
    open_storage(args.images)
    flow_ = preprocess_images
    if args.dask_address:
        from prefect_dask import DaskTaskRunner

        flow_ = preprocess_images.with_options(
            task_runner=DaskTaskRunner(address=args.dask_address)
        )
    state = flow_(csv=args.csv, images=args.images, out=args.out, return_state=True, **params)
    if not state.is_completed():
        return report_failure("preprocess", state)
    return report_result(state, args.out)
