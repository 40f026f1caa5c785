"""The preprocess sequence, defined once: check, claim OUT, plan, found check, split off what
is done, (compute the partitions), assemble.

`preprocess_run` performs every step before the partitions and holds OUT's writer lock for
the whole run; whoever runs the partitions (the Prefect flow, one task per partition; or
`preprocess` below, in this process) hands their summaries to `finish`. A notebook user runs
the job without Prefect with `preprocess(PreprocessParams(...))`, through the same steps.
The flow wraps two steps in Prefect tasks (retries, a task run in the UI): it passes its own
`plan` and `assemble` callables, with the signatures of `plan_rows` and `assemble_outputs`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import ImageFile

from imgbatch.compute import parallel
from imgbatch.compute.partition import PartitionSettings, run_partition
from imgbatch.errors import PermanentError, UsageError
from imgbatch.output.assemble import DamagedShard, assemble
from imgbatch.output.ownership import claim_output, dataset_identity
from imgbatch.output.shards import split_done
from imgbatch.params import PreprocessParams
from imgbatch.pixels.images import TRUNCATED_ON
from imgbatch.pixels.spec import ImageSpec
from imgbatch.plan.images_found import check_found
from imgbatch.plan.run_plan import PartitionPlan, Plan, make_plan
from imgbatch.preflight import check_preprocess
from imgbatch.storage.base import open_storage

log = logging.getLogger(__name__)
# Computes a run's `todo` partitions: (their summaries, reasons of the failed by id).
Compute = Callable[["PreprocessRun"], tuple[list[dict], dict[int, str]]]


def plan_rows(params: PreprocessParams, spec: ImageSpec) -> Plan:
    """Read the CSV, take every source's identity, write the plan file (a step of the run)."""
    storage = open_storage(params.images)
    return make_plan(params.csv, params.column, storage, spec, params.partition_size, params.out)


def assemble_outputs(
    settings: PartitionSettings, plan: Plan, params: dict, timings: dict, dataset: dict
) -> dict:
    """Publish OUT's outputs from the done shards; run.json (a step of the run)."""
    return assemble(
        settings.out, plan.partitions, plan.n_rows, settings.spec, params, timings, dataset
    )


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: `failures` (partition id -> reason) when a partition failed; else
    `run` (run.json) when assembled, None when chosen partitions left others not done."""

    note: str
    results: list[dict]  # the summaries of every done partition, in partition order
    failures: dict[int, str]
    run: dict | None = None


class PreprocessRun:
    """One run between its planning and its assembly: `todo` partitions to compute with
    `settings`, `done` summaries of those already done; `finish` ends it."""

    def __init__(
        self,
        params: PreprocessParams,
        plan: Plan,
        settings: PartitionSettings,
        dataset: dict,
        assemble_step: Callable[..., dict],
        started: float,
        recovered: str | None,
    ) -> None:
        self.params, self.plan, self.settings, self.dataset = params, plan, settings, dataset
        self._assemble, self._started = assemble_step, started
        self.recovered = recovered  # what finishing an interrupted publish did, if anything
        todo, done = split_done(params.out, plan.select(params.partitions))
        self.todo: list[PartitionPlan] = todo
        self.done: list[dict] = [{**r, "computed": False} for r in done]
        self._planned, self._cpu = time.perf_counter(), time.process_time()

    @property
    def total(self) -> int:
        """Partitions this run covers (to do and done)."""
        return len(self.todo) + len(self.done)

    def finish(self, compute: Compute) -> RunOutcome:
        """Compute the partitions to do with `compute` (the flow's tasks, or `run_here`), then
        end the run: Failed when a partition failed, assembled when every one is done. A
        committed shard found damaged while assembling is computed again at once (once per
        partition), so the run that finds the damage also mends it."""
        mended: set[int] = set()
        while True:
            computed, failures = compute(self)
            try:
                return self._conclude(computed, failures)
            except DamagedShard as exc:
                if exc.partition in mended:
                    raise
                mended.add(exc.partition)
                log.warning(
                    "%s of partition %d is damaged: computing it again", exc.what, exc.partition
                )
                kept = self.done + computed
                self.done = [r for r in kept if r["partition"] != exc.partition]
                self.todo = [p for p in self.plan.partitions if p.id == exc.partition]

    def _conclude(self, computed: list[dict], failures: dict[int, str]) -> RunOutcome:
        seconds, cpu = time.perf_counter() - self._planned, time.process_time() - self._cpu
        log.info(
            "partitions: %.3f s, %.3f CPU s",
            seconds,
            cpu,
            extra={"partitions_seconds": seconds, "partitions_cpu_seconds": cpu},
        )
        results = sorted(self.done + computed, key=lambda r: r["partition"])
        params, out = self.params, self.params.out
        if failures:
            first = min(failures)
            note = (
                f"{len(failures)} of {len(results) + len(failures)} partitions failed (first: "
                f"partition {first}, {failures[first]}); the others are committed; "
                "Retry (or rerun) computes only the failed ones"
            )
            return RunOutcome(note, results, failures)
        if unassembled := self.others_not_done():
            note = (
                f"{len(unassembled)} partitions outside {params.partitions} are not done; "
                "output not assembled until they are (run without partitions)"
            )
            return RunOutcome(note, results, {})
        made = sum(bool(r["computed"]) for r in results)
        timings = {  # with what the run did: assemble records those counts apart
            "plan_seconds": round(self._planned - self._started, 3),
            "partitions_seconds": round(seconds, 3),
            "computed_partitions": made,
            "reused_partitions": len(self.plan.partitions) - made,
        }
        run = self._assemble(
            self.settings, self.plan, params.model_dump(mode="json"), timings, self.dataset
        )
        counts = ", ".join(f"{k}={v}" for k, v in run["counts"].items())
        return RunOutcome(f"{run['rows']} rows -> {out}/images.npy ({counts})", results, {}, run)

    def others_not_done(self) -> list[int]:
        """Ids of partitions this run did not choose and whose shard is not done."""
        if not self.params.partitions:
            return []
        chosen = set(self.params.partitions)
        rest = [p for p in self.plan.partitions if p.id not in chosen]
        return [p.id for p in split_done(self.params.out, rest)[0]]


def check_decoder_settings() -> None:
    """Refuse at once, in one line, rather than flag every row `error`: a notebook that set
    PIL's LOAD_TRUNCATED_IMAGES would otherwise get a dataset of errors."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise UsageError(f"{TRUNCATED_ON}: set it to False before the run")


@contextmanager
def preprocess_run(
    params: PreprocessParams,
    writer: str,
    plan: Callable[[PreprocessParams, ImageSpec], Plan] = plan_rows,
    assemble_step: Callable[..., dict] = assemble_outputs,
) -> Iterator[PreprocessRun]:
    """Check, take OUT (writer lock, finish an interrupted publish, ownership; `writer` names
    this run to a second one), plan, stop when the images are not there, split off the done
    partitions. OUT stays locked until the block ends."""
    started = time.perf_counter()
    check_decoder_settings()
    params = check_preprocess(params)
    spec = params.spec()
    dataset = dataset_identity(params.csv, params.column, params.images, spec)
    with claim_output(params.out, dataset, writer, params.overwrite) as recovered:
        planned = plan(params, spec)
        check_found(planned, params.images, params.min_found)
        kind, workers = parallel.resolve(params.executor, params.workers)
        settings = PartitionSettings(
            planned.plan_file, params.images, params.out, spec, kind, workers
        )
        yield PreprocessRun(params, planned, settings, dataset, assemble_step, started, recovered)


class PartitionsFailed(PermanentError):
    """Some partitions failed; the others are committed, and a rerun computes only these."""


def preprocess(
    params: PreprocessParams, writer: str = "imgbatch.pipeline.preprocess"
) -> RunOutcome:
    """The whole job in this process, partitions in turn, without Prefect; `.run` is run.json
    once assembled. Raises PartitionsFailed naming the failed partitions (the others stay
    committed, and a second call computes only the failed ones)."""
    with preprocess_run(params, writer) as run:
        if run.recovered:
            print(run.recovered)
        outcome = run.finish(run_here)
    if outcome.failures:
        raise PartitionsFailed(outcome.note)
    return outcome


def run_here(run: PreprocessRun) -> tuple[list[dict], dict[int, str]]:
    """Compute the run's partitions in this process, in turn: (summaries, reasons of the
    failed), as the flow's partition tasks would give them to `finish`."""
    computed, failures = [], {}
    for part in run.todo:
        try:
            computed.append(run_partition(part, run.settings))
        except Exception as exc:  # as in the flow: the other partitions still run
            cause = f"{type(exc).__name__}: {exc}"
            failures[part.id] = f"rows {part.start}-{part.stop - 1}: {cause}"[:400]
    return computed, failures
