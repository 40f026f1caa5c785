"""The whole chain as one flow run, on archives in the seed's layout (members carry their
category folder, the CSV names category/file.jpg): wget (with a cut) -> extract as tar does
-> upload to the GCS emulator -> preprocess from gs:// ; the result equals preprocessing
the extracted local tree."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from helpers.archives import category_archives
from helpers.http_server import serve

from imgbatch.flows.prepare import prepare_dataset
from imgbatch.flows.preprocess import preprocess_images
from imgbatch.output.verify import verify_output
from imgbatch.params import PrepareParams, PreprocessParams

pytestmark = pytest.mark.usefixtures("prefect_server")


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_prepare_dataset_through_gcs_equals_the_local_tree(tmp_path, gcs):
    csv, archives = category_archives(tmp_path / "data", rows=26)
    with serve() as server:
        for a in archives:
            size = a.stat().st_size
            server.add(a.name, file=a, cut_at=[size // 2])
        params = PrepareParams(
            urls=[server.url(a.name) for a in archives],
            csv=str(csv),
            work=str(tmp_path / "work"),
            out=str(tmp_path / "out"),
            sha256=[sha(a) for a in archives],
            upload_to=gcs.url("images"),
            partition_size=10,
            retry_delay_seconds=0,
        )
        state = prepare_dataset(params, return_state=True)
        resumed = [r.range for a in archives for r in server.gets(a.name)]
    assert state.is_completed(), state.message
    assert (
        state.message == f"28 rows -> {tmp_path / 'out'}/images.npy (corrupt=1, missing=1, ok=26)"
    )
    assert sum(1 for r in resumed if r) == 2, f"each cut download must resume: {resumed}"

    run = verify_output(str(tmp_path / "out"))
    assert run["params"]["images"] == gcs.url("images")
    assert run["counts"] == {"ok": 26, "corrupt": 1, "missing": 1}
    tree = tmp_path / "work/images"
    local_files = {
        f"images/{p.relative_to(tree).as_posix()}": p.read_bytes()
        for p in tree.rglob("*")
        if p.is_file()
    }
    stored = gcs.objects("images/")
    assert len(local_files) == 27 and stored == local_files, "only images, no bookkeeping"

    local = preprocess_images(
        PreprocessParams(
            csv=str(csv),
            images=str(tmp_path / "work/images"),
            out=str(tmp_path / "local"),
            partition_size=10,
        ),
        return_state=True,
    )
    assert local.is_completed(), local.message
    assert sha(tmp_path / "out/images.npy") == sha(tmp_path / "local/images.npy")
    index = pd.read_parquet(tmp_path / "out/index.parquet")
    assert index["image_path"].tolist() == pd.read_csv(csv)["image_path"].tolist()
