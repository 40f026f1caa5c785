"""The two decode paths imgbatch takes instead of Pillow's, on the end-to-end corpus's files.

    .venv/bin/python -m benchmarks.decoders [--n 3000] [--dir D]

The corpus is benchmarks.e2e's (imgbatch.sampledata.samples, seed 1: about 10% PNG, mostly RGBA, and
progressive JPEGs among the rest), held in memory. Two tables, each decoder on the same
files: CPU-seconds to decode them all on one thread, wall seconds on two threads (one pool,
as the decode pool runs), and whether every output byte equals the reference's.

- PNG: Pillow, libspng (imagecodecs) alone, and imgbatch.pixels.png (zlib-ng inflate, then
  libspng); the reference is Pillow.
- Progressive JPEGs whose both sides are at least 8 x 128 (decoded at 1/8 for a 64-pixel
  target): the whole file against imgbatch.pixels.jpeg_scans' cut, both through Pillow's draft
  at 1/8; the reference is the whole file.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imagecodecs
import numpy as np
from PIL import Image

from benchmarks import report, scratch
from imgbatch.pixels import jpeg_scans, png
from imgbatch.sampledata import samples

EIGHTH = (128, 128)  # a 64-pixel target keeps at least twice that: 1/8 for files >= 1024


def pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return np.asarray(im)


def eighth(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", EIGHTH)
        im.load()
        return np.asarray(im)


def cut_eighth(data: bytes) -> np.ndarray:
    return eighth(jpeg_scans.dc_scans_only(data) or data)


PNG_DECODERS = {
    "Pillow": pillow,
    "libspng (imagecodecs)": imagecodecs.spng_decode,
    "imgbatch.pixels.png (zlib-ng inflate, then libspng)": png.decode,
}
JPEG_DECODERS = {
    "whole file, Pillow draft 1/8": eighth,
    "imgbatch.pixels.jpeg_scans cut, Pillow draft 1/8": cut_eighth,
}


def corpus(base: str, n: int) -> list[bytes]:
    root = Path(base) / "images"
    return [(root / p).read_bytes() for p in samples.write_tree(root, n, seed=1)]


def progressive_at_eighth(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as im:
        return im.format == "JPEG" and bool(im.info.get("progressive")) and min(im.size) >= 1024


def table(files: list[bytes], decoders: dict[str, Callable], reference: Callable) -> None:
    print("| decoder | CPU-s, 1 thread | wall s, 2 threads | bytes equal the reference's |")
    print("|---|---:|---:|---|")
    for name, decode in decoders.items():
        cpu = time.process_time()
        for d in files:
            decode(d)
        cpu = time.process_time() - cpu
        wall = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            for _ in pool.map(decode, files):
                pass
        wall = time.perf_counter() - wall
        same = all(np.array_equal(np.squeeze(decode(d)), reference(d)) for d in files)
        print(f"| {name} | {cpu:.2f} | {wall:.2f} | {'yes' if same else 'NO'} |")


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
    table(pngs, PNG_DECODERS, pillow)
    jpegs = [d for d in files if progressive_at_eighth(d)]
    cut = sum(jpeg_scans.dc_scans_only(d) is not None for d in jpegs)
    print(f"\n{len(jpegs)} progressive JPEGs decoded at 1/8 (both sides >= 1024 px), {cut} cut\n")
    table(jpegs, JPEG_DECODERS, eighth)


if __name__ == "__main__":
    report.run(main)
