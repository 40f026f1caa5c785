"""What the operator sees in the Prefect UI: progress, a summary, and what failed.

Artifact keys are derived from the output folder, so two datasets never overwrite each
other's "latest"; every artifact names the attempt (the flow run's run count) that made it,
and the failed-partitions table is published on every attempt, so after a successful Retry
the latest version says that none failed. A later attempt (a Retry) deletes the cards the
earlier attempts of its flow run made: the run's Artifacts tab tells how the run stands now,
not what a superseded attempt saw (docs/decisions/run-page-tells-the-story.md).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections import Counter
from collections.abc import Iterable
from contextlib import suppress
from uuid import UUID

from prefect import get_client
from prefect.artifacts import (
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run

from imgbatch.layout import PREVIEW
from imgbatch.output.preview import preview_jpeg
from imgbatch.output.shards import failed_rows
from imgbatch.storage.urls import is_gcs_url
from imgbatch.tasks.progress import ThrottledProgress

PROGRESS_SECONDS = 2.0


def artifact_key(out: str, what: str) -> str:
    """imgbatch-<folder name>-<hash of the path>-<what>: lowercase, digits and dashes."""
    name = re.sub(r"[^a-z0-9]+", "-", os.path.basename(out.rstrip("/")).lower()).strip("-")
    where = out.rstrip("/") if is_gcs_url(out) else os.path.abspath(out)
    digest = hashlib.sha256(where.encode()).hexdigest()[:8]
    return f"imgbatch-{name[:40] or 'out'}-{digest}-{what}"


def attempt() -> int:
    """This flow run's attempt: 1, then 2 after the first Retry, ..."""
    return flow_run.run_count or 1


def earlier_attempts() -> str:
    """The attempts before this one: "attempt 1", or "attempts 1-3"."""
    last = attempt() - 1
    return "attempt 1" if last == 1 else f"attempts 1-{last}"


class ProgressArtifact:
    """Partitions done and failed, counted apart; updated at most every PROGRESS_SECONDS."""

    def __init__(self, total: int, reused: int) -> None:
        self.total, self.done, self.failed = max(total, 1), reused, 0
        self.artifact = ThrottledProgress(self.percent(), self.text(), PROGRESS_SECONDS)

    def percent(self) -> float:
        return 100.0 * self.done / self.total

    def text(self) -> str:
        return (
            f"attempt {attempt()}: {self.done} of {self.total} partitions done, "
            f"{self.failed} failed"
        )

    def advance(self, ok: bool) -> None:
        self.done += ok
        self.failed += not ok
        last = self.done + self.failed >= self.total
        self.artifact.update(self.percent(), self.text(), last)


def publish_summary(
    out: str,
    results: list[dict],
    failures: dict[int, str],
    run: dict | None,
    note: str,
    progress: ProgressArtifact | None = None,
) -> None:
    """Markdown summary (counts by status, partitions, output) and tables of what failed;
    then the earlier attempts' cards of this flow run are deleted."""
    counts: Counter[str] = Counter()
    for r in results:
        counts.update(r["counts"])
    recomputed = [r["partition"] for r in results if r["computed"]]
    lines = [
        f"# imgbatch preprocess: attempt {attempt()}",
        "",
        note,
        "",
        f"- output: `{out}`",
        f"- partitions: {len(results)} done ({len(recomputed)} computed now, "
        f"{len(results) - len(recomputed)} reused from committed shards), "
        f"{len(failures)} failed",
        f"- partitions computed on attempt {attempt()}: {spans(recomputed)}",
        *([f"- replaces the cards of {earlier_attempts()}"] if attempt() > 1 else []),
        "",
        "| status | rows |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in sorted(counts.items())),
    ]
    if run:
        kind = "sha256" if run.get("images_sha256") else "crc32c"  # composed on gs://: crc32c
        lines += ["", f"- images.npy shape {run['shape']}, {kind} `{run[f'images_{kind}']}`"]
        lines += ["", *preview_lines(out)]
    made = [progress.artifact.id] if progress else []
    made.append(
        create_markdown_artifact(
            "\n".join(lines),
            key=artifact_key(out, "summary"),
            description=f"attempt {attempt()}: preprocess summary",
        )
    )
    made.append(publish_failed_partitions(out, failures))
    flagged = [r["partition"] for r in results if set(r["counts"]) - {"ok"}]
    bad = failed_rows(out, flagged)
    if bad:
        made.append(
            create_table_artifact(
                bad,
                key=artifact_key(out, "failed-rows"),
                description=f"attempt {attempt()}: rows flagged (zero-filled in images.npy), "
                "first 500",
            )
        )
    delete_earlier_cards(made)


def spans(ids: list[int], most: int = 20) -> str:
    """Sorted partition ids as ranges: "0-2, 5, 7-9"; "none" when empty."""
    runs: list[list[int]] = []
    for i in sorted(ids):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    text = [f"{a}-{b}" if b > a else str(a) for a, b in runs[:most]]
    more = f", ... ({len(runs) - most} more ranges)" if len(runs) > most else ""
    return ", ".join(text) + more if text else "none"


def delete_earlier_cards(made: Iterable[UUID]) -> None:
    """Delete the artifacts of this flow run that this attempt did not make: every one of them
    is a card of an earlier attempt (this module makes all of a preprocess run's), now
    superseded. Nothing to read on a first attempt."""
    if attempt() == 1:
        return
    keep = set(made)
    with get_client(sync_client=True) as client:
        mine = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]))
        for card in client.read_artifacts(artifact_filter=mine):
            if card.id not in keep:
                with suppress(ObjectNotFound):  # deleted meanwhile, e.g. in the UI
                    client.delete_artifact(card.id)


def preview_lines(out: str) -> list[str]:
    """The contact sheet embedded in the markdown (the UI shows it on the run's Artifacts tab),
    and where the full-size file is."""
    path = os.path.join(out, PREVIEW)
    data = base64.b64encode(preview_jpeg(path)).decode()
    return [
        f"![preview: evenly spaced rows, flagged ones crossed](data:image/jpeg;base64,{data})",
        "",
        f"full size: `{path}`",
    ]


def publish_failed_partitions(out: str, failures: dict[int, str]) -> UUID:
    """The failed partitions of this attempt; an explicit 'none failed' row when all passed."""
    rows = [{"partition": k, "reason": v} for k, v in sorted(failures.items())]
    description = (
        f"attempt {attempt()}: partitions that failed (press Retry to recompute only these)"
        if rows
        else f"attempt {attempt()}: no partition failed"
    )
    return create_table_artifact(
        rows or [{"partition": "-", "reason": f"none failed on attempt {attempt()}"}],
        key=artifact_key(out, "failed-partitions"),
        description=description,
    )
