"""images.npy of a fixed generated corpus, pinned: a refactor must not change one byte.

The sha256 values were computed with the code before the parameter-model refactor (commit
9360d87) and after it, identical. Pillow's resampling decides the bytes, so a Pillow upgrade
may legitimately change them: check the quality benchmark, then re-pin.
"""

from __future__ import annotations

import hashlib

import pytest

from imgbatch.compute.partition import PartitionSettings, run_partition
from imgbatch.output.assemble import assemble
from imgbatch.pixels.spec import ImageSpec
from imgbatch.plan.run_plan import make_plan
from imgbatch.sampledata import samples
from imgbatch.storage.base import LocalStorage

PINNED = {
    ImageSpec(): "48b16df6808f2dff86f03f41f5020f0eecff60c980315f5aad8c5d69af198d01",
    ImageSpec(
        32, "pad", (0, 0, 0)
    ): "60e2263c7ea177ea0c547bc5b01b533cdedf40c00a45bf459496f13b4d9e028c",
}


@pytest.mark.parametrize("spec", list(PINNED), ids=lambda s: f"{s.size}-{s.resize_mode}")
def test_fixed_corpus_gives_the_pinned_bytes(tmp_path, spec):
    paths = samples.write_tree(tmp_path / "images", 24, seed=3, min_side=40, max_side=200)
    csv = samples.write_csv(tmp_path / "rows.csv", paths + ["gone.jpg"])
    storage = LocalStorage(tmp_path / "images")
    out = str(tmp_path / "out")
    plan = make_plan(str(csv), "image_path", storage, spec, 10, out)
    for p in plan.partitions:
        run_partition(p, PartitionSettings(plan.plan_file, storage.root, out, spec, "threads", 1))
    assemble(out, plan.partitions, plan.n_rows, spec, {})
    digest = hashlib.sha256((tmp_path / "out/images.npy").read_bytes()).hexdigest()
    assert digest == PINNED[spec]
