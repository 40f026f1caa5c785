"""Interop with the real gsutil CLI on the same emulator (skipped where gsutil is absent).

Objects we upload must look right to gsutil (names, crc32c), and a tree gsutil uploads must be
read back by our GCSStorage byte for byte and be recognised as already there by our upload.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.gcs import crc32c_b64

from imgbatch.gcs import GCSStorage
from imgbatch.samples import write_tree
from imgbatch.transfer import upload_tree

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
    report = upload_tree(tree, gcs.url("ours"), workers=4)
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
    again = upload_tree(tree, gcs.url("theirs"), workers=4)
    assert again.uploaded == [] and len(again.skipped) == len(files)
