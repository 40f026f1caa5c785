"""imgbatch.pixels.jpeg_scans: a progressive JPEG decoded at 1/8 scale without the scans that scale
ignores gives the same bytes as the whole file, for every layout it accepts; everything
else is decoded whole, and a damaged file is still flagged.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np
import pytest
from PIL import Image

from imgbatch.pixels import jpeg_scans
from imgbatch.pixels.images import standardize
from imgbatch.pixels.spec import ImageSpec
from imgbatch.sampledata import samples

BIG = (1100, 1030)  # both sides >= 8 x 128: a 64-pixel target decodes it at 1/8
LAYOUTS = {  # name -> (mode, save options)
    "YCbCr 4:2:0": ("RGB", {"subsampling": 2}),
    "YCbCr 4:2:2": ("RGB", {"subsampling": 1}),
    "YCbCr 4:4:4": ("RGB", {"subsampling": 0}),
    "greyscale": ("L", {}),
    "CMYK": ("CMYK", {}),
}


@cache
def jpeg(layout: str, size: tuple[int, int] = BIG, progressive: bool = True) -> bytes:
    mode, options = LAYOUTS[layout]
    img = samples.photos()[0].resize(size, Image.Resampling.BICUBIC).convert(mode)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, progressive=progressive, **options)
    return buf.getvalue()


def drafted(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (128, 128))
        im.load()
        return np.asarray(im)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_the_cut_file_decodes_to_the_same_bytes_at_one_eighth(layout: str) -> None:
    data = jpeg(layout)
    lean = jpeg_scans.dc_scans_only(data)
    assert lean is not None and len(lean) < 0.7 * len(data)
    full = drafted(data)
    assert full.shape[:2] == (-(-BIG[1] // 8), -(-BIG[0] // 8))
    assert np.array_equal(drafted(lean), full)


@pytest.mark.parametrize("resize_mode", ["stretch", "center_crop", "pad"])
def test_standardize_takes_the_cut_and_gives_the_same_row(resize_mode: str, monkeypatch) -> None:
    data = jpeg("YCbCr 4:2:0")
    spec = ImageSpec(size=64, resize_mode=resize_mode)
    cut, calls = jpeg_scans.dc_scans_only, []
    monkeypatch.setattr(jpeg_scans, "dc_scans_only", lambda d: calls.append(1) or cut(d))
    got, out = standardize(data, spec)
    assert calls == [1] and out.status == "ok" and (out.width, out.height) == BIG
    monkeypatch.setattr(jpeg_scans, "dc_scans_only", lambda d: None)
    want, whole = standardize(data, spec)
    assert whole == out
    assert np.array_equal(got, want)


def test_only_progressive_files_at_one_eighth_are_cut(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(jpeg_scans, "dc_scans_only", lambda d: calls.append(1))
    standardize(jpeg("YCbCr 4:2:0", size=(700, 650)), ImageSpec(size=64))  # 1/4 scale
    standardize(jpeg("YCbCr 4:2:0", progressive=False), ImageSpec(size=64))  # baseline
    standardize(jpeg("YCbCr 4:2:0"), ImageSpec(size=200))  # 1/2 scale for this target
    assert calls == []
    assert jpeg_scans.dc_scans_only(jpeg("YCbCr 4:2:0", progressive=False)) is None


def _unusual() -> dict[str, bytes]:
    data = jpeg("YCbCr 4:2:0")
    return {
        "cut short": data[: len(data) // 2],
        "cut in a scan the decode would skip": data[:-200],
        "not a JPEG": b"\x89PNG\r\n\x1a\n" + data[2:],
        "empty": b"",
        "fill bytes before a segment": data[:2] + b"\xff\xff" + data[2:],
        "a marker with no length before the frame": data[:2] + b"\xff\x01" + data[2:],
        "lossless frame": data.replace(b"\xff\xc2", b"\xff\xc3", 1),
    }


@pytest.mark.parametrize("case", sorted(_unusual()))
def test_unusual_or_damaged_files_are_decoded_whole(case: str) -> None:
    assert jpeg_scans.dc_scans_only(_unusual()[case]) is None


def test_a_truncated_progressive_file_is_still_corrupt() -> None:
    """Its missing tail lies in scans the 1/8 decode skips: the row is flagged all the same."""
    arr, out = standardize(jpeg("YCbCr 4:2:0")[:-200], ImageSpec(size=64))
    assert out.status == "corrupt" and "truncated" in out.error
    assert not arr.any()
