"""The fast decode path against Pillow's, on the end-to-end corpus's files.

    .venv/bin/python -m benchmarks.decoders [--n 3000] [--dir D]

The corpus is benchmarks.e2e's (imgbatch.sampledata.samples, seed 1: about 10% PNG, mostly RGBA, and
progressive JPEGs among the rest), held in memory. Two tables, CPU-seconds on one thread:

- PNG decoders alone: Pillow, libspng (imagecodecs) alone, and imgbatch.pixels.png (zlib-ng
  inflate, then libspng), and whether every output byte equals Pillow's;
- images.standardize at the default 64-pixel target with the fast path on and off (what
  IMGBATCH_FAST_DECODE switches) on the same files: per kind of file and for the whole
  corpus, with the files the fast path took, and whether every outcome and row is the same.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from pathlib import Path

import imagecodecs
import numpy as np
from PIL import Image

from benchmarks import report, scratch
from imgbatch.pixels import png
from imgbatch.pixels.images import standardize
from imgbatch.pixels.spec import ImageSpec
from imgbatch.sampledata import samples

SPEC = ImageSpec()


def pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return np.asarray(im)


PNG_DECODERS = {
    "Pillow": pillow,
    "libspng (imagecodecs)": imagecodecs.spng_decode,
    "imgbatch.pixels.png (zlib-ng inflate, then libspng)": png.decode,
}


def corpus(base: str, n: int) -> list[bytes]:
    root = Path(base) / "images"
    return [(root / p).read_bytes() for p in samples.write_tree(root, n, seed=1)]


def kind(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as im:
        if im.format == "JPEG" and im.info.get("progressive"):
            return "progressive JPEG"
        return str(im.format)


def cpu(fn: Callable, files: list[bytes]) -> tuple[float, list]:
    t = time.process_time()
    out = [fn(d) for d in files]
    return time.process_time() - t, out


def decoder_table(files: list[bytes]) -> None:
    print("| decoder | CPU-s, 1 thread | bytes equal Pillow's |")
    print("|---|---:|---|")
    want = [pillow(d) for d in files]
    for name, decode in PNG_DECODERS.items():
        seconds, got = cpu(decode, files)
        same = all(
            g is not None and np.array_equal(np.squeeze(g), w)
            for g, w in zip(got, want, strict=True)
        )
        print(f"| {name} | {seconds:.2f} | {'yes' if same else 'NO'} |")


def switch_table(groups: dict[str, list[bytes]]) -> None:
    print("| files | n | fast path took | CPU-s fast on | CPU-s off (Pillow) | saved | same rows |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, files in groups.items():
        on, fast = cpu(lambda d: standardize(d, SPEC, True), files)
        off, slow = cpu(lambda d: standardize(d, SPEC, False), files)
        same = all(
            a[1] == b[1] and np.array_equal(a[0], b[0]) for a, b in zip(fast, slow, strict=True)
        )
        took = sum(png.decode(d) is not None for d in files)
        saved = f"{off - on:.2f} ({100 * (off - on) / off:.0f}%)"
        print(
            f"| {name} | {len(files)} | {took} | {on:.2f} | {off:.2f} | {saved} | "
            f"{'yes' if same else 'NO'} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=3000, help="files in the corpus (PNG and JPEG)")
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args()
    with scratch(args.dir) as tmp:
        files = corpus(tmp, args.n)
    pngs = [d for d in files if d.startswith(png.SIGNATURE)]
    pixels = sum(w * h for w, h in (Image.open(io.BytesIO(d)).size for d in pngs))
    print(f"{len(pngs)} PNGs of a {args.n}-file corpus, {pixels / 1e6:.0f} megapixels\n")
    decoder_table(pngs)
    groups: dict[str, list[bytes]] = {}
    for d in files:
        groups.setdefault(kind(d), []).append(d)
    groups = dict(sorted(groups.items()))
    groups["whole corpus"] = files
    print(f"\nimages.standardize, {SPEC.size}-pixel target, {SPEC.resize_mode}, 1 thread\n")
    switch_table(groups)


if __name__ == "__main__":
    report.run(main)
