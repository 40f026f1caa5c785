"""Interop with the real gsutil CLI on the same emulator (skipped where gsutil is absent).

Objects we upload must look right to gsutil (names, crc32c); a tree gsutil uploads must be
read back by our GCSStorage byte for byte, be recognised as already there by our upload, and
preprocess to the same images.npy as the local folder it came from.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from helpers.gcs import crc32c_b64

from imgbatch.acquire.upload import sync_tree
from imgbatch.sampledata.samples import write_csv, write_tree
from imgbatch.storage.gcs import GCSStorage

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    write_tree(root, 10, seed=11)
    (root / "top.txt").write_text("a file at the top level\n")
    (root / "d0/empty.bin").write_bytes(b"")
    return root


def local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_our_upload_is_listed_and_hashed_by_gsutil(gcs, gsutil, tree):
    report = sync_tree(tree, gcs.url("ours"), workers=4)
    assert report.ok and len(report.uploaded) == len(local_files(tree))
    expected = {f"gs://{gcs.name}/ours/{rel}" for rel in local_files(tree)}
    assert gsutil.ls_recursive(gcs.url("ours")) == expected
    hashes = gsutil.crc32c(f"gs://{gcs.name}/ours/**")
    assert hashes == {f"ours/{rel}": crc32c_b64(data) for rel, data in local_files(tree).items()}


def test_tree_uploaded_by_gsutil_is_read_back_by_gcs_storage(gcs, gsutil, tree):
    tops = sorted(str(p) for p in tree.iterdir())
    gsutil("-m", "cp", "-r", *tops, gcs.url("theirs") + "/")
    files = local_files(tree)
    storage = GCSStorage(gcs.url("theirs"))
    ids = storage.identities(list(files))
    assert None not in ids and len(set(ids)) == len(ids)
    for rel, data in files.items():
        assert storage.read(rel) == data, rel
    again = sync_tree(tree, gcs.url("theirs"), workers=4)
    assert again.uploaded == [] and len(again.skipped) == len(files)


def test_tree_uploaded_by_gsutil_preprocesses_like_the_local_folder(
    prefect_server, gcs, gsutil, tmp_path
):
    from imgbatch.cli.main import main

    root = tmp_path / "images"
    paths = write_tree(root, 23, seed=5, min_side=48, max_side=240)
    (root / "broken.jpg").write_bytes(b"<html>not an image</html>")
    paths += ["broken.jpg", "gone/missing.jpg"]
    csv = str(write_csv(tmp_path / "rows.csv", paths))
    gsutil("-m", "cp", "-r", *sorted(str(p) for p in root.iterdir()), gcs.url("imgs") + "/")

    outs = {}
    for name, images in (("local", str(root)), ("gcs", gcs.url("imgs"))):
        outs[name] = tmp_path / f"out-{name}"
        argv = ["preprocess", "--csv", csv, "--images", images, "--out", str(outs[name])]
        assert main([*argv, "--partition-size", "10", "--workers", "2"]) == 0, name

    digest = {
        k: hashlib.sha256((v / "images.npy").read_bytes()).hexdigest() for k, v in outs.items()
    }
    assert digest["gcs"] == digest["local"]
    status = {k: pd.read_parquet(v / "index.parquet")["status"].tolist() for k, v in outs.items()}
    assert status["gcs"] == status["local"]
    assert status["gcs"][-2:] == ["corrupt", "missing"] and set(status["gcs"][:-2]) == {"ok"}
