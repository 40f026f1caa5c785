"""What the operator sees in the Prefect UI: progress, a summary, and what failed.

Artifact keys are derived from the output folder, so two datasets never overwrite each
other's "latest"; every artifact names the attempt (the flow run's run count) that made it,
and the failed-partitions table is published on every attempt, so after a successful Retry
the latest version says that none failed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections import Counter

from prefect.artifacts import (
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.runtime import flow_run

from imgbatch.layout import PREVIEW
from imgbatch.output.preview import preview_jpeg
from imgbatch.output.shards import failed_rows
from imgbatch.tasks.progress import ThrottledProgress

PROGRESS_SECONDS = 2.0


def artifact_key(out: str, what: str) -> str:
    """imgbatch-<folder name>-<hash of the path>-<what>: lowercase, digits and dashes."""
    name = re.sub(r"[^a-z0-9]+", "-", os.path.basename(out.rstrip("/")).lower()).strip("-")
    digest = hashlib.sha256(os.path.abspath(out).encode()).hexdigest()[:8]
    return f"imgbatch-{name[:40] or 'out'}-{digest}-{what}"


def attempt() -> int:
    """This flow run's attempt: 1, then 2 after the first Retry, ..."""
    return flow_run.run_count or 1


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
    out: str, results: list[dict], failures: dict[int, str], run: dict | None, note: str
) -> None:
    """Markdown summary (counts by status, partitions, output) and tables of what failed."""
    counts: Counter[str] = Counter()
    for r in results:
        counts.update(r["counts"])
    computed = sum(r["computed"] for r in results)
    lines = [
        f"# imgbatch preprocess: attempt {attempt()}",
        "",
        note,
        "",
        f"- output: `{out}`",
        f"- partitions: {len(results)} done ({computed} computed now, "
        f"{len(results) - computed} reused from committed shards), {len(failures)} failed",
        "",
        "| status | rows |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in sorted(counts.items())),
    ]
    if run:
        lines += ["", f"- images.npy shape {run['shape']}, sha256 `{run['images_sha256']}`"]
        lines += ["", *preview_lines(out)]
    create_markdown_artifact(
        "\n".join(lines), key=artifact_key(out, "summary"), description="preprocess summary"
    )
    publish_failed_partitions(out, failures)
    flagged = [r["partition"] for r in results if set(r["counts"]) - {"ok"}]
    bad = failed_rows(out, flagged)
    if bad:
        create_table_artifact(
            bad,
            key=artifact_key(out, "failed-rows"),
            description=f"attempt {attempt()}: rows flagged (zero-filled in images.npy), first 500",
        )


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


def publish_failed_partitions(out: str, failures: dict[int, str]) -> None:
    """The failed partitions of this attempt; an explicit 'none failed' row when all passed."""
    rows = [{"partition": k, "reason": v} for k, v in sorted(failures.items())]
    note = "press Retry to recompute only these" if rows else "none failed"
    create_table_artifact(
        rows or [{"partition": "-", "reason": f"none failed on attempt {attempt()}"}],
        key=artifact_key(out, "failed-partitions"),
        description=f"attempt {attempt()}: partitions that failed ({note})",
    )
