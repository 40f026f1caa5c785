"""A real full disk (a small tmpfs) under OUT: the reason names the cause and the path, the
partition is not retried in vain, the others are committed, and a rerun after freeing space
completes. Needs root to mount the tmpfs; skipped with the reason elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imgbatch.flows.preprocess import preprocess_images
from imgbatch.output.verify import verify_output
from imgbatch.params import PreprocessParams
from imgbatch.tasks.report import artifact_key

pytestmark = pytest.mark.usefixtures("prefect_server")


def latest_table(out: Path) -> list[dict]:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    key = artifact_key(str(out), "failed-partitions")
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    return json.loads(max(arts, key=lambda a: a.created).data)


def test_a_full_disk_says_so_with_the_path_and_rows(make_dataset, small_disk, tmp_path):
    csv, root, _ = make_dataset(40)
    out = small_disk / "out"
    filler = small_disk / "filler"
    # 64x64x3 x 10 rows = 123 kB per shard: leave room for about three of four shards.
    filler.write_bytes(b"\0" * (2 * 1024 * 1024 - 3 * 140 * 1024))
    params = PreprocessParams(
        csv=csv,
        images=root,
        out=str(out),
        partition_size=10,
        workers=1,
        retries=2,
        retry_delay_seconds=0,
    )
    state = preprocess_images(params, return_state=True)
    assert state.is_failed()
    assert "no space left on device" in state.message and str(out / "shards") in state.message
    table = latest_table(out)
    assert table and all("disk is full" in r["reason"] for r in table), table
    assert all("rows " in r["reason"] and "part-0000" in r["reason"] for r in table), table
    done = sorted(p.name for p in (out / "shards").glob("*.done.json"))
    assert 1 <= len(done) < 4, done

    filler.unlink()
    state = preprocess_images(params, return_state=True)
    assert state.is_completed(), state.message
    assert verify_output(str(out))["rows"] == 40
    assert "none failed" in latest_table(out)[0]["reason"]
