"""`--csv gs://BUCKET/OBJECT` against a real fake-gcs-server, core only (no Prefect): the same
bytes as the local CSV, the object fetched once per generation, a rerun that computes nothing,
a replaced object that recomputes only the partitions whose rows changed, and a missing object
or bucket refused by the command in one line, exit 2, before any work."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import helpers.gcs as gcs_helpers
import pytest
from helpers.gcs import MEDIA

from imgbatch.params import PrepareParams, PreprocessParams
from imgbatch.pipeline import preprocess
from imgbatch.preflight import check_prepare
from imgbatch.sampledata import samples
from imgbatch.storage.gcs_copy import COPIES

gcs_emulator = gcs_helpers.gcs_emulator
faulty_gcs = gcs_helpers.faulty_gcs

CSV_OBJECT = "lists/rows.csv"


def run(csv: str, root: str, out: Path) -> tuple[dict, int]:
    """A preprocess run in this process: (run.json, partitions it computed)."""
    params = PreprocessParams(
        csv=csv, images=root, out=str(out), size=16, partition_size=10, workers=1
    )
    outcome = preprocess(params)
    return outcome.run, sum(r["computed"] for r in outcome.results)


def array(out: Path) -> bytes:
    return (out / "images.npy").read_bytes()


def test_a_gs_csv_gives_the_local_bytes_reruns_nothing_and_recomputes_what_changed(
    make_dataset, faulty_gcs, tmp_path, monkeypatch
):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # this test's TMPDIR
    (tmp_path / "tmp").mkdir()
    csv, root, paths = make_dataset(25, extra=["gone.jpg"])
    assert run(csv, root, tmp_path / "local")[0]["counts"] == {"ok": 25, "missing": 1}
    blob = faulty_gcs.client().bucket(faulty_gcs.name).blob(CSV_OBJECT)
    blob.upload_from_filename(csv)
    url = faulty_gcs.url(CSV_OBJECT)
    fetches = lambda: faulty_gcs.proxy.count("GET", MEDIA + r".*lists%2Frows\.csv")  # noqa: E731

    first, computed = run(url, root, tmp_path / "gs")
    assert array(tmp_path / "gs") == array(tmp_path / "local")
    assert computed == 3 and (first["computed_partitions"], first["reused_partitions"]) == (3, 0)
    assert first["params"]["csv"] == first["dataset"]["csv"] == url
    local_sha = hashlib.sha256(Path(csv).read_bytes()).hexdigest()
    assert first["dataset"]["csv_sha256"] == local_sha
    assert fetches() == 1, "the object is fetched once per generation"

    again, computed = run(url, root, tmp_path / "gs")
    assert computed == 0 and again == first and fetches() == 1

    # rows 20-25 (partition 2) reordered, the others unchanged: a new generation
    changed = paths[:20] + paths[20:][::-1]
    new_csv = samples.write_csv(tmp_path / "rows2.csv", changed)
    blob.upload_from_filename(new_csv)
    third, computed = run(url, root, tmp_path / "gs")
    assert computed == 1 and (third["computed_partitions"], third["reused_partitions"]) == (1, 2)
    assert third["dataset"]["csv_sha256"] != local_sha
    assert fetches() == 2
    run(str(new_csv), root, tmp_path / "local2")
    assert array(tmp_path / "gs") == array(tmp_path / "local2") != array(tmp_path / "local")
    copies = os.listdir(tmp_path / "tmp" / COPIES)
    assert len(copies) == 1, f"older generations' copies are removed: {copies}"


COMMAND = [sys.executable, "-m", "imgbatch.cli.main"]


@pytest.mark.parametrize("missing", ["object", "bucket"])
def test_a_missing_csv_object_or_bucket_is_one_line_and_exit_2(
    missing, make_dataset, faulty_gcs, tmp_path
):
    _, root, _ = make_dataset(1)
    bucket = faulty_gcs.name + ("-gone" if missing == "bucket" else "")
    url = f"gs://{bucket}/{CSV_OBJECT}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    got = subprocess.run([*COMMAND, "preprocess", "--csv", url, "--images", root, "--out",
                          str(tmp_path / "out")], env=env, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert got.returncode == 2, got.stderr
    line = {
        "object": f"CSV {url!r} does not exist",
        "bucket": f"CSV {url!r}: bucket gs://{bucket} does not exist",
    }[missing]
    assert got.stderr == f"imgbatch preprocess: error: {line}\n"
    assert not (tmp_path / "out").exists() and not (tmp_path / "prefect").exists()


def test_prepare_keeps_a_gs_csv_and_checks_its_header_first(faulty_gcs, tmp_path):
    blob = faulty_gcs.client().bucket(faulty_gcs.name).blob(CSV_OBJECT)
    blob.upload_from_string(b"item_id,path\n1,a.jpg\n")
    params = PrepareParams(
        urls=["http://127.0.0.1:9/a.tar.gz"],
        csv=faulty_gcs.url(CSV_OBJECT),
        work=str(tmp_path / "work"),
        out=str(tmp_path / "out"),
    )
    with pytest.raises(Exception, match=r"has no column 'image_path' \(columns: item_id, path\)"):
        check_prepare(params)
    checked = check_prepare(params.model_copy(update={"column": "path"}))
    assert checked.csv == faulty_gcs.url(CSV_OBJECT)
    assert checked.preprocess("gs://b/images").csv == faulty_gcs.url(CSV_OBJECT)
    assert json.loads(checked.model_dump_json())["csv"].startswith("gs://")
