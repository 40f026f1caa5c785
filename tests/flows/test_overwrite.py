"""--overwrite is safe to follow: the old result stays whole until a new one is published.

Run as a user would: the `imgbatch preprocess` command against the session's Prefect server,
into a finished output, with an images root one folder off (the mistake that once replaced a
good result with nothing).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from imgbatch.cli.main import main
from imgbatch.output.verify import verify_output

OUTPUTS = ("images.npy", "index.parquet", "run.json", "preview.png")


def args_for(csv, root, out, *extra):
    return ["preprocess", "--csv", csv, "--images", str(root), "--out", str(out), *extra]


def digests(out: Path) -> dict[str, str]:
    """sha256 of the published set and of every shard file."""
    files = [out / n for n in OUTPUTS] + sorted((out / "shards").iterdir())
    return {str(f.relative_to(out)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("imgbatch preprocess")]


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("off_by", ["too high", "too deep"])
def test_a_wrong_images_root_is_named_and_overwrite_keeps_the_old_result(
    make_dataset, tmp_path, capsys, off_by
):
    csv, root, paths = make_dataset(8)
    out = tmp_path / "out"
    assert main(args_for(csv, root, out, "--partition-size", "4")) == 0
    before = digests(out)
    if off_by == "too high":
        wrong = Path(root).parent
    else:  # the root points inside the first row's folder
        first = Path(paths[0])
        assert len(first.parts) > 1, "the sample tree has category folders"
        wrong = Path(root) / first.parts[0]
    capsys.readouterr()

    assert main(args_for(csv, wrong, out, "--partition-size", "4")) == 2
    refused = error_lines(capsys.readouterr().err)
    assert len(refused) == 1, refused
    assert (
        f"this run names {wrong}" in refused[0]
        and "Check images (--images) first; if it is right, set overwrite (--overwrite)"
        in refused[0]
    )
    assert f"is the images root one folder {off_by}?" in refused[0]
    assert digests(out) == before

    code = main(args_for(csv, wrong, out, "--partition-size", "4", "--overwrite"))
    failed = error_lines(capsys.readouterr().err)
    assert code == 1 and len(failed) == 1, failed
    assert f"is the images root one folder {off_by}?" in failed[0]
    assert digests(out) == before, "a replacement that failed must leave the old result whole"
    verify_output(str(out))


@pytest.mark.usefixtures("prefect_server")
def test_overwrite_replaces_the_set_and_drops_the_stale_normalized_copy(make_dataset, tmp_path):
    csv, root, _ = make_dataset(6)
    out = tmp_path / "out"
    assert main(args_for(csv, root, out, "--partition-size", "3")) == 0
    assert main(["stats", str(out), "--normalize"]) == 0
    assert (out / "images_f32.npy").exists()
    replace = args_for(csv, root, out, "--partition-size", "3", "--size", "16", "--overwrite")
    assert main(replace) == 0
    assert np.load(out / "images.npy").shape == (6, 16, 16, 3)
    assert not os.path.exists(out / "images_f32.npy"), "normalized copy of the old set left"
    verify_output(str(out))
