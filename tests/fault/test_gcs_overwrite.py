"""One dataset per output and a safe --overwrite, on a gs:// OUT as on a folder: another
dataset's run is refused; an --overwrite whose run fails (an images root one folder too high)
leaves the old set exactly as it was; one that succeeds replaces it with the new dataset's.
The whole sequence runs through imgbatch.pipeline (the flow's steps, without Prefect) against
the real emulator.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imgbatch.errors import UsageError
from imgbatch.output.ownership import OutputConflict
from imgbatch.output.verify import verify_output
from imgbatch.params import PreprocessParams
from imgbatch.pipeline import preprocess
from imgbatch.plan.images_found import ImagesNotFound
from imgbatch.sampledata import samples


def dataset(folder: Path, seed: int) -> tuple[str, str]:
    paths = samples.write_tree(folder / "images", 8, seed=seed)
    return str(samples.write_csv(folder / "rows.csv", paths)), str(folder / "images")


def generations(gcs) -> dict[str, int]:
    """Every object under OUT but the plan (the runs' working file, rewritten by each plan)
    and its generation: unchanged means untouched."""
    blobs = gcs.client().list_blobs(gcs.name, prefix="out/")
    return {b.name: b.generation for b in blobs if b.name != "out/plan.parquet"}


def test_another_dataset_is_refused_a_failed_overwrite_keeps_the_old_set(gcs, tmp_path):
    out = gcs.url("out")
    csv_a, root_a = dataset(tmp_path / "a", seed=1)
    csv_b, root_b = dataset(tmp_path / "b", seed=2)
    first = preprocess(PreprocessParams(csv=csv_a, images=root_a, out=out, partition_size=4)).run
    before = generations(gcs)
    assert "out/images.npy" in before and "out/run.json" in before

    with pytest.raises(OutputConflict, match=r"set overwrite \(--overwrite\)"):
        preprocess(PreprocessParams(csv=csv_b, images=root_b, out=out, partition_size=4))
    assert generations(gcs) == before

    too_high = str(Path(root_b).parent)
    with pytest.raises(ImagesNotFound, match="one folder too high"):
        preprocess(
            PreprocessParams(csv=csv_b, images=too_high, out=out, partition_size=4, overwrite=True)
        )
    assert generations(gcs) == before, "a failed replacement leaves the old set untouched"
    assert verify_output(out)["images_crc32c"] == first["images_crc32c"]

    replaced = preprocess(
        PreprocessParams(csv=csv_b, images=root_b, out=out, partition_size=4, overwrite=True)
    ).run
    preprocess(PreprocessParams(csv=csv_b, images=root_b, out=str(tmp_path / "local"),
                                partition_size=4))  # fmt: skip
    assert replaced["images_crc32c"] != first["images_crc32c"]
    assert verify_output(out)["dataset"]["csv"] == csv_b
    array = gcs.client().bucket(gcs.name).blob("out/images.npy").download_as_bytes()
    assert array == (tmp_path / "local" / "images.npy").read_bytes()


def test_an_out_bucket_that_cannot_be_written_is_a_bad_argument_before_any_work(
    faulty_gcs, tmp_path
):
    """403 on the first write (the lock object): one line, a UsageError (exit 2), no plan."""
    from helpers.gcs import UPLOAD, Rule

    csv, root = dataset(tmp_path / "a", seed=1)
    faulty_gcs.proxy.set_rules(Rule("status:403:no write access (injected)", "POST", UPLOAD))
    out = faulty_gcs.url("out")
    with pytest.raises(UsageError) as refused:
        preprocess(PreprocessParams(csv=csv, images=root, out=out, partition_size=4))
    assert str(refused.value) == (
        f"out {out}: bucket gs://{faulty_gcs.name} cannot be written with these credentials "
        "(HTTP 403)"
    )
    assert list(faulty_gcs.client().list_blobs(faulty_gcs.name)) == []
