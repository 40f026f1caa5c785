"""What the user sees in the Prefect UI: a progress artifact, a summary and failure tables."""

from __future__ import annotations

from collections import Counter

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from imgbatch.shards import failed_rows

SUMMARY_KEY = "imgbatch-preprocess-summary"
FAILED_KEY = "imgbatch-failed-rows"
FAILED_PARTITIONS_KEY = "imgbatch-failed-partitions"


class ProgressArtifact:
    """A progress artifact updated once per finished partition."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.finished = 0
        self.id = create_progress_artifact(0.0, description=f"partitions done of {total}")

    def advance(self) -> None:
        self.finished += 1
        update_progress_artifact(self.id, 100.0 * self.finished / self.total)


def publish_summary(
    out: str, results: list[dict], failures: dict[int, str], run: dict | None, note: str
) -> None:
    """Markdown summary (counts by status, partitions, output) and tables of what failed."""
    counts: Counter[str] = Counter()
    for r in results:
        counts.update(r["counts"])
    computed = sum(r["computed"] and not r["cached"] for r in results)
    lines = [
        "# imgbatch preprocess",
        "",
        note,
        "",
        f"- output: `{out}`",
        f"- partitions: {len(results)} done ({computed} computed, {len(results) - computed} "
        f"reused), {len(failures)} failed",
        "",
        "| status | rows |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in sorted(counts.items())),
    ]
    if run:
        lines += [
            "",
            f"- images.npy shape {run['shape']}, sha256 `{run['images_sha256']}`",
            f"- preview: `{out}/preview.png`",
        ]
    create_markdown_artifact("\n".join(lines), key=SUMMARY_KEY, description="preprocess summary")
    if failures:
        create_table_artifact(
            [{"partition": k, "reason": v} for k, v in sorted(failures.items())],
            key=FAILED_PARTITIONS_KEY,
            description="partitions that failed: press Retry to recompute only these",
        )
    bad = failed_rows(out, [r["partition"] for r in results])
    if bad:
        create_table_artifact(
            bad, key=FAILED_KEY, description="rows flagged (zero-filled in images.npy), first 500"
        )
