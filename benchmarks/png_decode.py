"""PNG decoders on the PNGs of the end-to-end corpus: Pillow, libspng (imagecodecs) alone, and
imgbatch.png (the stream inflated by zlib-ng, then libspng).

    .venv/bin/python -m benchmarks.png_decode [--n 3000] [--dir D]

The corpus is benchmarks.e2e's (sampledata.samples, seed 1, N files of which about 10% are
PNG, mostly RGBA), held in memory. For each decoder: CPU-seconds to decode every PNG on one
thread, wall seconds on two threads (one pool, as the decode pool runs), and whether every
pixel equals Pillow's. This is why imgbatch.images sends plain PNGs to imgbatch.png.
"""

from __future__ import annotations

import argparse
import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imagecodecs
import numpy as np
from PIL import Image

from benchmarks import scratch
from imgbatch import png
from sampledata import samples


def pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return np.asarray(im)


DECODERS = {
    "Pillow": pillow,
    "libspng (imagecodecs)": imagecodecs.spng_decode,
    "imgbatch.png (zlib-ng inflate, then libspng)": png.decode,
}


def corpus_pngs(base: str, n: int) -> list[bytes]:
    root = Path(base) / "images"
    paths = samples.write_tree(root, n, seed=1)
    return [(root / p).read_bytes() for p in paths if p.endswith(".png")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=3000, help="files in the corpus (PNG and JPEG)")
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args()
    with scratch(args.dir) as tmp:
        pngs = corpus_pngs(tmp, args.n)
    megapixels = sum(w * h for w, h in (Image.open(io.BytesIO(d)).size for d in pngs)) / 1e6
    print(f"{len(pngs)} PNGs of a {args.n}-file corpus, {megapixels:.0f} megapixels\n")
    print("| decoder | CPU-s, 1 thread | wall s, 2 threads | pixels equal Pillow's |")
    print("|---|---:|---:|---|")
    for name, decode in DECODERS.items():
        cpu = time.process_time()
        for d in pngs:
            decode(d)
        cpu = time.process_time() - cpu
        wall = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            for _ in pool.map(decode, pngs):
                pass
        wall = time.perf_counter() - wall
        same = all(np.array_equal(np.squeeze(decode(d)), pillow(d)) for d in pngs)
        print(f"| {name} | {cpu:.2f} | {wall:.2f} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
