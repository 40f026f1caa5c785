"""Image files nobody on the project wrote, for the fast-decode differential test.

Sources (each a different encoder or layout):
- "pillow-tests": every file of Pillow's own test images (its sdist's Tests/images, for the
  installed Pillow version), fetched by `make testdata` (`python tests/helpers/outside_images.py
  fetch DIR`) into a gitignored folder;
- "libjpeg-turbo": progressive and baseline JPEGs written by Debian's `cjpeg` and `jpegtran`
  (libjpeg-turbo-progs): scan scripts, restart markers, every subsampling, greyscale, CMYK;
- "pypng": PNGs written by pypng (pure Python): every colour type and bit depth, palettes,
  interlacing, image data split into many IDAT chunks;
- "imagecodecs": PNGs from libpng and libspng, a one-frame APNG, JPEGs from imagecodecs'
  own libjpeg-turbo;
- "mutations": seeded damage to files of the sources above (imgbatch.mutations' kinds).
The pictures are scikit-image's real photos (imgbatch.sampledata.samples), resized.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import imagecodecs
import numpy as np
import png as pypng
from PIL import Image

from imgbatch.sampledata import samples

MAX_BYTES = 4 << 20  # larger outside files cost time and add no layout
COLOUR_SCANS = {  # cjpeg/jpegtran -scans scripts for three components
    "dc-then-full-ac": "0,1,2: 0-0, 0, 0;\n0: 1-63, 0, 0;\n1: 1-63, 0, 0;\n2: 1-63, 0, 0;\n",
    "bands": "0,1,2: 0-0,0,0;\n0: 1-1,0,0;\n0: 2-5,0,0;\n0: 6-63,0,0;\n"
    "1: 1-63,0,0;\n2: 1-63,0,0;\n",
    "late-low-band": "0,1,2: 0-0,0,0;\n0: 6-63,0,0;\n0: 1-5,0,0;\n1: 1-63,0,0;\n2: 1-63,0,0;\n",
    "dc-per-component": "0: 0-0,0,1;\n1: 0-0,0,1;\n2: 0-0,0,1;\n0,1,2: 0-0,1,0;\n"
    "0: 1-63,0,0;\n2: 1-63,0,0;\n1: 1-63,0,0;\n",
    "refined": "0,1,2: 0-0,0,2;\n0: 1-5,0,2;\n0: 6-63,0,2;\n1: 1-63,0,1;\n2: 1-63,0,1;\n"
    "0,1,2: 0-0,2,1;\n0: 1-63,2,1;\n0,1,2: 0-0,1,0;\n0: 1-63,1,0;\n1: 1-63,1,0;\n2: 1-63,1,0;\n",
    "chroma-first": "0,1,2: 0-0,0,0;\n2: 1-63,0,0;\n1: 1-63,0,0;\n0: 1-2,0,0;\n0: 3-63,0,0;\n",
}
GREY_SCANS = {
    "grey-bands": "0: 0-0,0,0;\n0: 1-9,0,0;\n0: 10-63,0,0;\n",
    "grey-refined": "0: 0-0,0,1;\n0: 1-5,0,2;\n0: 6-63,0,2;\n0: 1-63,2,1;\n0: 0-0,1,0;\n"
    "0: 1-63,1,0;\n",
}
SAMPLINGS = ("1x1", "2x1", "2x2", "1x2", "4x1", "2x2,1x1,1x1")


def pillow_images_dir(base: Path) -> Path:
    """Where `fetch` puts the installed Pillow version's Tests/images."""
    import PIL

    return base / f"pillow-{PIL.__version__}" / "images"


def fetch(base: Path) -> Path:
    """Download the installed Pillow's sdist (pip) and keep only its Tests/images."""
    import PIL

    target = pillow_images_dir(base)
    if (target / ".complete").exists():
        return target
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:",
             "--no-deps", f"pillow=={PIL.__version__}", "-d", tmp],
            check=True,
        )  # fmt: skip
        (sdist,) = Path(tmp).glob("*.tar.gz")
        staging = Path(tmp) / "images"
        staging.mkdir()
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if member.isfile() and parts[1:3] == ("Tests", "images"):
                    member.name = "/".join(parts[3:])
                    tar.extract(member, staging, filter="data")
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(target)
    (target / ".complete").write_text(PIL.__version__)
    return target


def pillow_tests(base: Path) -> Iterator[tuple[str, bytes]]:
    root = pillow_images_dir(base)
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != ".complete" and path.stat().st_size <= MAX_BYTES:
            yield str(path.relative_to(root)), path.read_bytes()


def _photo(index: int, side: int, mode: str = "RGB") -> Image.Image:
    img = samples.photos()[index % len(samples.photos())]
    w, h = img.size
    scale = side / min(w, h)
    return img.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC).convert(mode)


def libjpeg_turbo(tmp: Path, rng: random.Random, count: int) -> Iterator[tuple[str, bytes]]:
    """`count` JPEGs from cjpeg (half of them then rewritten by jpegtran)."""
    scripts = {}
    for name, text in {**COLOUR_SCANS, **GREY_SCANS}.items():
        scripts[name] = tmp / f"{name}.txt"
        scripts[name].write_text(text)
    for i in range(count):
        grey = rng.random() < 0.2
        side = rng.choice((160, 270, 300, 530))
        src = tmp / f"src.{'pgm' if grey else 'ppm'}"
        _photo(i, side, "L" if grey else "RGB").save(src)
        args = ["cjpeg", "-quality", str(rng.choice((35, 75, 92)))]
        if not grey:
            args += ["-sample", rng.choice(SAMPLINGS)]
        if rng.random() < 0.3:
            args += ["-restart", rng.choice(("1", "3", "1B"))]
        if rng.random() < 0.3:
            args += ["-optimize"]
        layout = rng.choice(("baseline", "progressive", "scans"))
        scan_names = sorted(GREY_SCANS if grey else COLOUR_SCANS)
        if layout == "progressive":
            args.append("-progressive")
        elif layout == "scans":
            script = rng.choice(scan_names)
            args += ["-scans", str(scripts[script])]
            layout = f"scans-{script}"
        data = subprocess.run([*args, str(src)], capture_output=True, check=True).stdout
        name = f"cjpeg-{i}-{layout}.jpg"
        if rng.random() < 0.5:
            data, how = _jpegtran(data, rng, scripts, scan_names)
            name = f"cjpeg-{i}-jpegtran-{how}.jpg"
        yield name, data
    for i in range(max(4, count // 20)):  # CMYK: Pillow writes it, jpegtran makes it progressive
        buf = io.BytesIO()
        _photo(i, rng.choice((270, 300)), "CMYK").save(buf, "JPEG", quality=80)
        args = ["jpegtran", "-progressive"] + (["-restart", "2"] if i % 2 else [])
        yield f"jpegtran-cmyk-{i}.jpg", _run(args, buf.getvalue())


def _jpegtran(data: bytes, rng: random.Random, scripts: dict, names: list) -> tuple[bytes, str]:
    how = rng.choice(("progressive", "scans", "restart", "optimize-copy-all"))
    args = ["jpegtran"]
    if how == "progressive":
        args.append("-progressive")
    elif how == "scans":
        name = rng.choice(names)
        args += ["-scans", str(scripts[name])]
        how = f"scans-{name}"
    elif how == "restart":
        args += ["-progressive", "-restart", "1"]
    else:
        args += ["-optimize", "-copy", "all"]
    return _run(args, data), how


def _run(args: list[str], data: bytes) -> bytes:
    return subprocess.run(args, input=data, capture_output=True, check=True).stdout


def pypng_files(rng: random.Random, count: int) -> Iterator[tuple[str, bytes]]:
    """PNGs written by pypng: colour types, bit depths, palettes, interlace, IDAT splits."""
    kinds = ("L", "LA", "RGB", "RGBA", "P")
    for i in range(count):
        kind = kinds[i % len(kinds)]
        depth = 8 if kind in ("LA", "RGB", "RGBA") else rng.choice((1, 2, 4, 8))
        if kind in ("LA", "RGB", "RGBA", "L") and rng.random() < 0.2:
            depth = 16
        side = rng.choice((17, 40, 64, 130))
        img = _photo(i, side, "RGBA" if kind in ("LA", "RGBA") else "RGB")
        arr = np.asarray(img).astype(np.uint32)
        if kind in ("L", "LA"):
            grey = arr[:, :, :3].mean(axis=2).astype(np.uint32)
            arr = np.dstack([grey, arr[:, :, 3]]) if kind == "LA" else grey[:, :, None]
        h, w = arr.shape[:2]
        options = {
            "interlace": rng.random() < 0.2,
            "compression": rng.choice((None, 0, 1, 9)),
            "chunk_limit": rng.choice((2**20, 256, 4096)),
        }
        if kind == "P":
            levels = 2**depth
            index = (arr[:, :, 0] * levels // 256).astype(np.uint32)
            palette = [(v * 255 // max(1, levels - 1), 40, 255 - v * 255 // levels) for v in
                       range(levels)]  # fmt: skip
            writer = pypng.Writer(w, h, palette=palette, bitdepth=depth, **options)
            rows = index
        else:
            planes = arr.shape[2]
            top = (1 << depth) - 1
            rows = (arr * top // 255).reshape(h, w * planes)
            writer = pypng.Writer(w, h, greyscale=kind in ("L", "LA"), alpha=kind in ("LA", "RGBA"),
                                  bitdepth=depth, **options)  # fmt: skip
        buf = io.BytesIO()
        writer.write(buf, rows.tolist())
        yield (
            f"pypng-{i}-{kind}-{depth}bit{'-interlaced' if options['interlace'] else ''}.png",
            (buf.getvalue()),
        )


def imagecodecs_files(rng: random.Random, count: int) -> Iterator[tuple[str, bytes]]:
    """PNGs from libpng and libspng, one-frame APNGs, and JPEGs of imagecodecs' libjpeg."""
    for i in range(count):
        side = rng.choice((20, 64, 150, 300))
        mode = rng.choice(("L", "RGB", "RGBA"))
        arr = np.asarray(_photo(i, side, mode))
        kind = ("png", "spng", "apng", "jpeg")[i % 4]
        if kind == "png":
            data = imagecodecs.png_encode(arr, level=rng.choice((1, 6, 9)))
        elif kind == "spng":
            data = imagecodecs.spng_encode(arr)
        elif kind == "apng":
            data = imagecodecs.apng_encode(arr[None])
        else:
            data = imagecodecs.jpeg8_encode(np.ascontiguousarray(arr[..., :3]),
                                            level=rng.choice((50, 90)))  # fmt: skip
        yield f"imagecodecs-{i}-{kind}-{mode}.{'jpg' if kind == 'jpeg' else 'png'}", data


if __name__ == "__main__":
    if sys.argv[1:2] != ["fetch"] or len(sys.argv) != 3:
        sys.exit("usage: outside_images.py fetch DIR")
    os.makedirs(sys.argv[2], exist_ok=True)
    print(fetch(Path(sys.argv[2])))
