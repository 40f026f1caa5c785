"""Sample data made at run time from real photos shipped inside scikit-image's wheel.

Used by `imgbatch demo`, the tests and the benchmarks, so nothing large is committed and
nothing is downloaded. Needs the `demo` extra (scikit-image).
"""

from __future__ import annotations

import csv
import gzip
import io
import random
import tarfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from PIL import Image

from imgbatch.errors import UsageError

# Colour photographs in skimage/data (sizes 300-1411 px), plus one RGBA logo.
PHOTO_FILES: tuple[str, ...] = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "retina.jpg",
    "rocket.jpg",
)
RGBA_FILES: tuple[str, ...] = ("logo.png", "horse.png")


def _data_dir() -> Path:
    try:
        import skimage
    except ImportError:
        raise UsageError("sample photos need scikit-image: pip install 'imgbatch[demo]'") from None
    return Path(skimage.__file__).parent / "data"


def _load(names: tuple[str, ...], mode: str) -> tuple[Image.Image, ...]:
    d = _data_dir()
    out = []
    for name in names:
        with Image.open(d / name) as im:
            out.append(im.convert(mode))
    return tuple(out)


@cache
def photos() -> tuple[Image.Image, ...]:
    """The real colour photos, decoded once (RGB)."""
    return _load(PHOTO_FILES, "RGB")


@cache
def rgba_photos() -> tuple[Image.Image, ...]:
    """Real images with an alpha channel (RGBA)."""
    return _load(RGBA_FILES, "RGBA")


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def varied_image(
    rng: random.Random, min_side: int = 300, max_side: int = 1500
) -> tuple[bytes, str]:
    """One realistic file: a real photo rescaled/cropped, as JPEG (some progressive) or PNG.

    Returns (bytes, extension). About 90% JPEG (a third progressive), 7.5% RGBA PNG and
    2.5% RGB PNG: product-photo datasets are mostly JPEG, with some transparent PNGs.
    """
    kind = rng.random()
    src = rng.choice(rgba_photos() if 0.9 <= kind < 0.975 else photos())
    long_side = rng.randint(min_side, max_side)
    w, h = src.size
    scale = long_side / max(w, h)
    img = src.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)
    if kind < 0.9:
        return encode(
            img, "JPEG", quality=rng.choice((75, 85, 92)), progressive=rng.random() < 0.3
        ), "jpg"
    return encode(img, "PNG", compress_level=6), "png"


def write_tree(
    root: str | Path,
    n: int,
    seed: int = 0,
    subdirs: int = 4,
    min_side: int = 300,
    max_side: int = 1500,
) -> list[str]:
    """Write n varied images under root (in a few sub-folders); return their relative paths."""
    rng = random.Random(seed)
    root = Path(root)
    paths = []
    for i in range(n):
        data, ext = varied_image(rng, min_side, max_side)
        rel = f"d{i % subdirs}/img_{i:06d}.{ext}"
        write_if_changed(root / rel, data)
        paths.append(rel)
    return paths


def write_if_changed(path: Path, data: bytes) -> None:
    """Leave an identical file alone, so its mtime (part of the fingerprint) is kept."""
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_csv(path: str | Path, image_paths: Sequence[str], column: str = "image_path") -> Path:
    """A manifest CSV with a row id, the image path column and a label, like the Shopee CSV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", column, "category"])
        for i, p in enumerate(image_paths):
            w.writerow([i, p, ("phone", "fashion", "beauty")[i % 3]])
    return path


def tar_gz(root: Path, folder: str) -> bytes:
    """A reproducible .tar.gz of root/folder's files, members named folder/... (fixed order,
    times and owners), as the seed's category archives are."""
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for path in sorted(p for p in (root / folder).rglob("*") if p.is_file()):
            info = tarfile.TarInfo(path.relative_to(root).as_posix())
            info.size, info.mode = path.stat().st_size, 0o644
            with path.open("rb") as f:
                tar.addfile(info, f)
    return buf.getvalue()
