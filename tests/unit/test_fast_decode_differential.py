"""The fast decode path against Pillow's on files nobody on the project wrote.

Every file of helpers.outside_images (Pillow's own test images, cjpeg/jpegtran, pypng,
imagecodecs' encoders, seeded mutations of them) is standardized with the fast path forced
on and with Pillow only, at sizes that take each JPEG draft scale (1/8 included) and in every
resize mode at the first size: status, reason, source size and every output byte must match.

Needs `make testdata` (Pillow's test images, Debian's libjpeg-turbo-progs); `make test` runs
it first, and sets IMGBATCH_REQUIRE_TESTDATA=1 so missing data fails instead of skipping.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import tempfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers import mutations, outside_images
from PIL import Image

from imgbatch.pixels import png
from imgbatch.pixels.images import standardize
from imgbatch.pixels.spec import RESIZE_MODES, ImageSpec

DATA = Path(__file__).resolve().parents[2] / ".cache" / "testdata"
SEED = 22
MIN_FILES, MIN_SOURCES = 2000, 4


def _need(ok: bool, why: str) -> None:
    if not ok:
        if os.environ.get("IMGBATCH_REQUIRE_TESTDATA") == "1":
            pytest.fail(f"{why}: run `make testdata`")
        pytest.skip(f"{why}: run `make testdata`")


def build_corpus() -> list[tuple[str, str, bytes]]:
    """(source, name, bytes) of every file, the same on every run (seeded)."""
    rng = random.Random(SEED)
    files = [("pillow-tests", n, d) for n, d in outside_images.pillow_tests(DATA)]
    with tempfile.TemporaryDirectory() as tmp:
        files += [
            ("libjpeg-turbo", n, d) for n, d in outside_images.libjpeg_turbo(Path(tmp), rng, 420)
        ]
    files += [("pypng", n, d) for n, d in outside_images.pypng_files(rng, 260)]
    files += [("imagecodecs", n, d) for n, d in outside_images.imagecodecs_files(rng, 200)]
    bases = [
        f for f in files if f[2].startswith(mutations.PNG_SIGNATURE) or f[2][:2] == b"\xff\xd8"
    ]
    for source, name, data in rng.sample(bases, min(len(bases), 450)):
        for _ in range(2):
            done = mutations.mutate(data, rng)
            if done is not None:
                files.append(("mutations", f"{source}/{name}~{done[0]}", done[1]))
    return files


def sizes(data: bytes) -> list[int]:
    """16 and 64, and for a JPEG the target its 1/8 draft scale serves."""
    out = [16, 64]
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format == "JPEG":
                out.insert(1, max(1, min(im.size) // 16))
    except Exception:  # noqa: BLE001 - not an image: any size will do
        pass
    return list(dict.fromkeys(out))


def compare(item: tuple[str, str, bytes]) -> tuple[int, bool, list[str]]:
    """(comparisons made, fast path taken by png.decode, differences) for one file."""
    source, name, data = item
    made, diffs = 0, []
    for i, size in enumerate(sizes(data)):
        for mode in RESIZE_MODES if i == 0 else ("stretch",):
            spec = ImageSpec(size=size, resize_mode=mode)
            (fast, a), (slow, b) = standardize(data, spec, True), standardize(data, spec, False)
            made += 1
            if a != b or not np.array_equal(fast, slow):
                px = int(np.abs(fast.astype(int) - slow).max())
                diffs.append(f"{source}:{name} size {size} {mode}: fast {a} vs Pillow {b}, {px=}")
    return made, png.decode(data) is not None, diffs


@pytest.mark.timeout(600)
def test_fast_path_gives_pillows_rows_on_outside_files() -> None:
    _need(outside_images.pillow_images_dir(DATA).joinpath(".complete").exists(),
          "Pillow's test images are missing")  # fmt: skip
    _need(bool(shutil.which("cjpeg") and shutil.which("jpegtran")), "cjpeg/jpegtran missing")
    files = build_corpus()
    per_source = Counter(s for s, _, _ in files)
    workers = min(2, len(os.sched_getaffinity(0)))
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(compare, files, chunksize=16))
    made = sum(r[0] for r in results)
    fast_files = sum(r[1] for r in results)
    diffs = [d for r in results for d in r[2]]
    print(f"\n{len(files)} files {dict(per_source)}, {made} comparisons, "
          f"{fast_files} files png.decode takes, {len(diffs)} differences")  # fmt: skip
    assert len(files) >= MIN_FILES and len(per_source) >= MIN_SOURCES
    assert all(n >= 100 for n in per_source.values()), per_source
    assert fast_files >= 300, "too few files exercise the fast path for the test to mean much"
    assert diffs == [], "\n".join(diffs[:30])
