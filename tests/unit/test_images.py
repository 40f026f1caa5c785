"""pixels.images.standardize: bad input, every pixel mode, EXIF, alpha, resize modes, quality.

Core only (no Prefect). Small synthetic images are made the same size as the target, so the
resize is an exact copy and pixel values can be asserted exactly; real photos come from
imgbatch.sampledata.samples and are compared with benchmarks.reference (full-resolution Lanczos).
"""

from __future__ import annotations

import io
import json
import os
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers.png_chunks import chunk
from PIL import EpsImagePlugin, Image

from benchmarks.reference import psnr, reference
from imgbatch.pixels.images import STATUSES, standardize
from imgbatch.pixels.spec import ImageSpec
from imgbatch.sampledata import samples

S = 16
SPEC = ImageSpec(size=S)


@pytest.fixture(autouse=True, scope="module")
def _self_checked() -> None:
    """The fast path's once-per-process self-check runs before any test counts decoder calls."""
    from imgbatch.pixels import images

    assert images._fast_path_verified()


BG = (10, 20, 30)  # a background no test image contains
MODES = ("stretch", "center_crop", "pad")


def enc(img: Image.Image, fmt: str, **params) -> bytes:
    """Encode a Pillow image to bytes."""
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def run(data: bytes, spec: ImageSpec = SPEC) -> tuple[np.ndarray, object]:
    """standardize() plus the invariants every row must satisfy, whatever the input."""
    arr, out = standardize(data, spec)
    assert arr.shape == (spec.size, spec.size, 3)
    assert arr.dtype == np.uint8
    assert out.status in STATUSES
    if out.status == "ok":
        assert out.error == ""
    else:
        assert not arr.any(), "a failed row must be all zeros"
        assert out.error and "\n" not in out.error
    return arr, out


def photo(index: int = 1, size: tuple[int, int] | None = None) -> Image.Image:
    """A real RGB photo (chelsea, 451x300, by default), optionally resized."""
    img = samples.photos()[index]
    return img.resize(size, Image.Resampling.LANCZOS) if size else img


def png_header_only(width: int, height: int) -> bytes:
    """A well-formed PNG whose IHDR claims width x height but carries almost no data."""

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


EPS = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n%%EndComments\n"
    b"0 0 moveto 16 16 lineto stroke\nshowpage\n%%EOF\n"
)


# --- bad input: flagged, zero row, never raises ---------------------------------------------


@pytest.mark.parametrize("keep", [0.05, 0.5, 0.95])
def test_truncated_jpeg_is_corrupt(keep: float) -> None:
    data = enc(photo(), "JPEG", quality=90)
    arr, out = run(data[: int(len(data) * keep)])
    assert out.status == "corrupt"
    assert "truncated" in out.error
    assert (out.width, out.height) == (451, 300)  # the header was readable


def test_jpeg_missing_only_its_end_marker_is_corrupt() -> None:
    arr, out = run(enc(photo(), "JPEG", quality=90)[:-2])
    assert out.status == "corrupt"


def test_zero_bytes_is_corrupt() -> None:
    arr, out = run(b"")
    assert out.status == "corrupt"
    assert "empty" in out.error
    assert (out.width, out.height) == (0, 0)


def test_html_saved_as_jpg_is_corrupt() -> None:
    html = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body></body></html>\n"
    arr, out = run(html)
    assert out.status == "corrupt"
    assert "not a recognised image" in out.error


def test_random_bytes_are_corrupt() -> None:
    arr, out = run(random.Random(1).randbytes(4096))
    assert out.status == "corrupt"


@pytest.mark.parametrize("fmt", ["ICO", "PCX", "PPM", "TGA", "SGI"])
def test_format_outside_allow_list_is_rejected(fmt: str) -> None:
    data = enc(photo(size=(32, 32)), fmt)
    with Image.open(io.BytesIO(data)) as im:  # Pillow itself could decode it
        assert im.format == fmt
    arr, out = run(data)
    assert out.status == "rejected"
    assert fmt in out.error


def test_eps_is_rejected_without_starting_ghostscript(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "gs-was-run"
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    gs = fake_bin / "gs"
    gs.write_text(f'#!/bin/sh\necho "$@" >> "{marker}"\nexit 1\n')
    gs.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)  # forget any cached lookup

    arr, out = run(EPS)
    assert out.status == "rejected"
    assert "EPS" in out.error
    assert not marker.exists(), "standardize started Ghostscript"

    # Control: decoding this file with Pillow directly does run our fake gs, so the check
    # above would have seen it.
    with pytest.raises(Exception), Image.open(io.BytesIO(EPS)) as im:  # noqa: B017
        im.load()
    assert marker.exists()


_NO_BIG_ALLOCATION = r"""
import json, resource, sys
from PIL import Image
from imgbatch.pixels.images import standardize
from imgbatch.pixels.spec import ImageSpec

def vm_bytes():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024

data = sys.stdin.buffer.read()
w, h = int(sys.argv[1]), int(sys.argv[2])
limit = vm_bytes() + 256 * 2**20  # 256 MiB above what the interpreter already maps
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
try:  # control: decoding the claimed size would not fit under this limit
    Image.new("RGB", (w, h))
    control = "allocated"
except MemoryError:
    control = "refused"
arr, out = standardize(data, ImageSpec(size=64))
print(json.dumps({"control": control, "status": out.status, "error": out.error,
                  "shape": list(arr.shape), "any": bool(arr.any())}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("side", [20000, 10000])  # 2x over Pillow's limit; 1.1x (only warns)
def test_huge_png_header_is_rejected_without_allocating(side: int) -> None:
    # tracemalloc does not see Pillow's C allocations, so the image runs in a child process
    # whose address space is capped; a full-size decode buffer could not be allocated there.
    proc = subprocess.run(
        [sys.executable, "-c", _NO_BIG_ALLOCATION, str(side), str(side)],
        input=png_header_only(side, side),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert result["control"] == "refused"
    assert result["status"] == "rejected"
    assert f"{side * side}" in result["error"] or f"{side}x{side}" in result["error"]
    assert result["shape"] == [64, 64, 3] and not result["any"]


# --- pixel modes ------------------------------------------------------------------------------


def test_rgb_png_is_exact() -> None:
    src = np.asarray(photo(size=(S, S)))
    arr, out = run(enc(Image.fromarray(src), "PNG"))
    assert out.status == "ok" and (out.width, out.height) == (S, S)
    np.testing.assert_array_equal(arr, src)


def test_mode_L_is_repeated_to_three_channels() -> None:
    gray = np.random.default_rng(0).integers(0, 256, (S, S), dtype=np.uint8)
    arr, out = run(enc(Image.fromarray(gray, "L"), "PNG"))
    assert out.status == "ok"
    for c in range(3):
        np.testing.assert_array_equal(arr[:, :, c], gray)


def _palette_image() -> Image.Image:
    """S x S palette image: left half index 0 (red), right half index 1 (blue)."""
    img = Image.new("P", (S, S), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * (254 * 3))
    img.paste(1, (S // 2, 0, S, S))
    return img


def test_mode_P_without_transparency_uses_palette_colours() -> None:
    arr, out = run(enc(_palette_image(), "PNG"), ImageSpec(size=S, background=BG))
    assert out.status == "ok"
    assert (arr[:, : S // 2] == (255, 0, 0)).all()
    assert (arr[:, S // 2 :] == (0, 0, 255)).all()


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_mode_P_transparent_index_becomes_background(fmt: str) -> None:
    data = enc(_palette_image(), fmt, transparency=0)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "P" and im.info.get("transparency") == 0
    arr, out = run(data, ImageSpec(size=S, background=BG))
    assert out.status == "ok"
    assert (arr[:, : S // 2] == BG).all()
    assert (arr[:, S // 2 :] == (0, 0, 255)).all()


def test_mode_P_with_partial_alpha_palette_is_blended() -> None:
    # PNG tRNS with one alpha per palette entry: red fully transparent, blue half.
    data = enc(_palette_image(), "PNG", transparency=bytes([0, 128]))
    arr, out = run(data, ImageSpec(size=S, background=BG))
    assert out.status == "ok"
    assert (arr[:, : S // 2] == BG).all()
    a = 128 / 255
    want = np.array([0, 0, 255]) * a + np.array(BG) * (1 - a)
    assert np.abs(arr[:, S // 2 :].astype(float) - want).max() <= 1


def _alpha_test_image(channels: int) -> tuple[np.ndarray, np.ndarray]:
    """S x S colour (or gray) + alpha columns: 0, 64, 128, 255 in four vertical bands."""
    rng = np.random.default_rng(3)
    color = rng.integers(0, 256, (S, S, channels), dtype=np.uint8)
    alpha = np.repeat(np.array([0, 64, 128, 255], dtype=np.uint8), S // 4)[None, :].repeat(S, 0)
    return color, alpha


@pytest.mark.parametrize("background", [(255, 255, 255), BG])
@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_over_background(mode: str, background: tuple[int, int, int]) -> None:
    color, alpha = _alpha_test_image(3 if mode == "RGBA" else 1)
    img = Image.fromarray(np.dstack([color, alpha]), mode)
    arr, out = run(enc(img, "PNG"), ImageSpec(size=S, background=background))
    assert out.status == "ok"
    rgb = np.repeat(color, 3, axis=2) if mode == "LA" else color
    q = S // 4
    # fully transparent -> background exactly; opaque -> the colour exactly
    assert (arr[:, :q] == background).all()
    np.testing.assert_array_equal(arr[:, 3 * q :], rgb[:, 3 * q :])
    # partial -> the blend colour * a + background * (1 - a)
    a = alpha[:, q : 3 * q, None] / 255.0
    want = rgb[:, q : 3 * q] * a + np.array(background) * (1 - a)
    assert np.abs(arr[:, q : 3 * q].astype(float) - want).max() <= 1


def test_real_rgba_photo_is_composited_like_reference() -> None:
    src = samples.rgba_photos()[1]  # horse.png: transparent parts
    data = enc(src, "PNG")
    for bg in ((255, 255, 255), BG):
        spec = ImageSpec(size=64, background=bg)
        arr, out = run(data, spec)
        assert out.status == "ok"
        assert psnr(arr, reference(data, spec)) >= 40


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_mode_CMYK_is_converted(fmt: str) -> None:
    cmyk = {
        "red": ((0, 255, 255, 0), (255, 0, 0)),
        "black": ((0, 0, 0, 255), (0, 0, 0)),
        "white": ((0, 0, 0, 0), (255, 255, 255)),
        "cyan": ((255, 0, 0, 0), (0, 255, 255)),
    }
    img = Image.new("CMYK", (S, S))
    for i, (ink, _) in enumerate(cmyk.values()):
        img.paste(ink, (i * S // 4, 0, (i + 1) * S // 4, S))
    data = enc(img, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "CMYK"
    arr, out = run(data)
    assert out.status == "ok"
    tol = 12 if fmt == "JPEG" else 0
    for i, (_, rgb) in enumerate(cmyk.values()):
        centre = arr[S // 2, i * S // 4 + S // 8].astype(int)
        assert np.abs(centre - rgb).max() <= tol, (i, centre, rgb)


def _gradient_16bit() -> np.ndarray:
    """S x S uint16 horizontal gradient covering 0..65535."""
    row = np.linspace(0, 65535, S).round().astype(np.uint16)
    return np.tile(row, (S, 1))


@pytest.mark.parametrize(("fmt", "mode"), [("PNG", "I;16"), ("TIFF", "I;16"), ("TIFF", "I")])
def test_16_bit_is_scaled_not_clipped(fmt: str, mode: str) -> None:
    g16 = _gradient_16bit()
    img = Image.fromarray(g16) if mode == "I;16" else Image.fromarray(g16.astype(np.int32), "I")
    data = enc(img, fmt)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == mode
    arr, out = run(data)
    assert out.status == "ok"
    row = arr[S // 2, :, 0].astype(int)
    assert np.abs(row - g16[0] / 257.0).max() <= 1  # 16 bits scaled to 8
    assert row[0] == 0 and row[-1] == 255
    assert (np.diff(row) > 0).all(), f"gradient lost: {row}"
    assert (arr[:, :, 0] == arr[:, :, 1]).all() and (arr[:, :, 1] == arr[:, :, 2]).all()


def test_16_bit_photo_keeps_its_detail() -> None:
    gray8 = np.asarray(photo(size=(64, 64)).convert("L")).astype(np.uint16)
    img16 = Image.fromarray(gray8 * 257)  # same picture, 16 bits
    arr, out = run(enc(img16, "PNG"), ImageSpec(size=64))
    assert out.status == "ok"
    assert np.abs(arr[:, :, 0].astype(int) - gray8).max() <= 1


def test_mode_1_is_black_and_white() -> None:
    img = Image.new("1", (S, S), 0)
    img.paste(1, (0, 0, S // 2, S))
    for fmt in ("PNG", "BMP", "TIFF"):
        arr, out = run(enc(img, fmt))
        assert out.status == "ok", fmt
        assert (arr[:, : S // 2] == 255).all() and (arr[:, S // 2 :] == 0).all(), fmt


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_mode_F_float_tiff(scale: float) -> None:
    row = np.linspace(0.0, 1.0, S, dtype=np.float32) * scale
    img = Image.fromarray(np.tile(row, (S, 1)), "F")
    arr, out = run(enc(img, "TIFF"))
    assert out.status == "ok"
    got = arr[S // 2, :, 0].astype(int)
    assert np.abs(got - np.linspace(0, 255, S)).max() <= 1


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animated_image_uses_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (S, S), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    params = {"lossless": True} if fmt == "WEBP" else {}
    data = enc(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **params)
    with Image.open(io.BytesIO(data)) as im:
        assert im.n_frames == 3
    arr, out = run(data)
    assert out.status == "ok"
    assert (arr == (255, 0, 0)).all()


@pytest.mark.parametrize("fmt", ["WEBP", "BMP", "TIFF", "GIF"])
def test_other_allowed_formats_decode(fmt: str) -> None:
    src = photo(size=(64, 48))
    params = {"lossless": True} if fmt == "WEBP" else {}
    data = enc(src, fmt, **params)
    arr, out = run(data, ImageSpec(size=32))
    assert out.status == "ok" and (out.width, out.height) == (64, 48)
    want = np.asarray(src.resize((32, 32), Image.Resampling.LANCZOS))
    assert psnr(arr, want) >= (25 if fmt == "GIF" else 45)  # GIF: 256-colour palette


# --- EXIF orientation -------------------------------------------------------------------------

# How to store an upright photo so that orientation tag o shows it upright again.
_STORE_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("resize_mode", MODES)
@pytest.mark.parametrize("orientation", sorted(_STORE_AS))
def test_exif_orientation_is_applied(orientation: int, resize_mode: str) -> None:
    upright = photo()  # 451 x 300: not square, so a missed rotation changes the geometry
    stored = upright.transpose(_STORE_AS[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    tagged = enc(stored, "JPEG", quality=95, exif=exif)
    spec = ImageSpec(size=64, resize_mode=resize_mode)

    got, out = run(tagged, spec)
    want, _ = run(enc(upright, "JPEG", quality=95), spec)
    assert out.status == "ok"
    assert psnr(got, want) >= 35
    assert psnr(got, reference(tagged, spec)) >= 35
    # Control: the same pixels without the tag look clearly different.
    untagged, _ = run(enc(stored, "JPEG", quality=95), spec)
    assert psnr(untagged, want) < 25


# --- PNG: imgbatch.pixels.png for plain 8-bit files, Pillow for everything else -----------------


def _after_ihdr(png: bytes, extra: bytes) -> bytes:
    at = 8 + 25  # signature, then IHDR (length, type, 13 bytes, crc)
    return png[:at] + extra + png[at:]


def _before_iend(png: bytes, extra: bytes) -> bytes:
    at = png.rindex(b"IEND") - 4
    return png[:at] + extra + png[at:]


def _plain_pngs() -> dict[str, bytes]:
    rgb, rgba = photo(size=(120, 80)), samples.rgba_photos()[1].resize((120, 80))
    plain = enc(rgb, "PNG")
    return {
        "L": enc(rgb.convert("L"), "PNG"),
        "RGB": plain,
        "RGBA": enc(rgba, "PNG"),
        "RGB with gAMA": _after_ihdr(plain, chunk(b"gAMA", struct.pack(">I", 100000))),
        "RGB with a colour key": enc(rgb, "PNG", transparency=(1, 2, 3)),
        "RGB with bytes after IEND": plain + b"trailing bytes",
    }


@pytest.mark.parametrize("kind", sorted(_plain_pngs()))
@pytest.mark.parametrize("resize_mode", MODES)
def test_plain_png_gives_pillows_pixels(kind: str, resize_mode: str, monkeypatch) -> None:
    """pixels.png decodes these (not Pillow), and every output byte is what Pillow's gives."""
    from imgbatch.pixels import images, png

    data = _plain_pngs()[kind]
    with Image.open(io.BytesIO(data)) as im:
        plain = images._plain_png(im, data)
        im.load()
        assert plain is not None
        assert np.array_equal(np.asarray(plain), np.asarray(im))
    spec = ImageSpec(size=24, resize_mode=resize_mode, background=BG)
    decode, calls = png.decode, []
    monkeypatch.setattr(png, "decode", lambda d: calls.append(1) or decode(d))
    got, out = run(data, spec)
    assert calls == [1]  # standardize took the imgbatch.pixels.png path
    monkeypatch.setattr(images, "_plain_png", lambda img, data: None)
    want, pillow_out = run(data, spec)
    assert out == pillow_out and out.status == "ok"
    assert np.array_equal(got, want)


def test_png_whose_exif_follows_the_pixels_is_still_turned_upright() -> None:
    upright = photo()  # 451 x 300
    stored = upright.transpose(_STORE_AS[6])
    exif = Image.Exif()
    exif[0x0112] = 6
    raw = exif.tobytes()
    raw = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
    tagged = _before_iend(enc(stored, "PNG"), chunk(b"eXIf", raw))
    with Image.open(io.BytesIO(tagged)) as im:
        assert "exif" not in im.info  # Pillow finds it only by decoding the pixels
    spec = ImageSpec(size=64)
    got, out = run(tagged, spec)
    want, _ = run(enc(upright, "PNG"), spec)
    assert out.status == "ok"
    assert psnr(got, want) >= 35
    untagged, _ = run(enc(stored, "PNG"), spec)
    assert psnr(untagged, want) < 25  # control: a missed rotation shows


@pytest.mark.parametrize("kind", ["P", "LA", "I;16", "1", "animated", "interlaced-flag"])
def test_other_pngs_are_left_to_pillow(kind: str) -> None:
    from imgbatch.pixels import images

    img = photo(size=(40, 30))
    if kind == "animated":
        data = enc(img, "PNG", save_all=True, append_images=[img.rotate(90)], duration=100)
    elif kind == "interlaced-flag":  # IHDR's last byte set: Adam7, which Pillow decodes
        png = bytearray(enc(img, "PNG"))
        png[28] = 1
        png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])) & 0xFFFFFFFF)
        data = bytes(png)
    elif kind == "I;16":
        data = enc(Image.fromarray(np.asarray(img.convert("L")).astype(np.uint16) * 257), "PNG")
    else:
        data = enc(img.convert(kind), "PNG")
    with Image.open(io.BytesIO(data)) as im:
        assert images._plain_png(im, data) is None


@pytest.mark.parametrize("damage", ["truncated", "flipped byte in IDAT"])
def test_damaged_png_is_corrupt_with_pillows_reason(damage: str) -> None:
    png = enc(photo(size=(200, 150)), "PNG")
    if damage == "truncated":
        data = png[: len(png) // 2]
    else:
        broken = bytearray(png)
        broken[png.index(b"IDAT") + 200] ^= 0xFF
        data = bytes(broken)
    arr, out = run(data)
    assert out.status == "corrupt"  # was "ok" with half-decoded pixels before the fix
    assert ("truncated" if damage == "truncated" else "data stream") in out.error


# --- resize modes -----------------------------------------------------------------------------


def _three_bands(width: int, height: int) -> Image.Image:
    """Wide image: left third red, middle third green, right third blue."""
    img = Image.new("RGB", (width, height), (0, 255, 0))
    img.paste((255, 0, 0), (0, 0, width // 3, height))
    img.paste((0, 0, 255), (2 * width // 3, 0, width, height))
    return img


def test_stretch_keeps_the_whole_picture() -> None:
    arr, out = run(enc(_three_bands(6 * S, 2 * S), "PNG"), ImageSpec(size=S))
    assert out.status == "ok" and (out.width, out.height) == (6 * S, 2 * S)
    a = arr.astype(int)  # Lanczos rings by a few levels next to each edge
    assert (np.abs(a[:, 0] - (255, 0, 0)) <= 5).all()
    assert (np.abs(a[:, S // 2] - (0, 255, 0)) <= 5).all()
    assert (np.abs(a[:, -1] - (0, 0, 255)) <= 5).all()


def test_center_crop_of_wide_image_keeps_the_centre() -> None:
    spec = ImageSpec(size=S, resize_mode="center_crop")
    arr, out = run(enc(_three_bands(6 * S, 2 * S), "PNG"), spec)
    assert out.status == "ok"
    inner = arr[:, 2:-2].astype(int)  # Lanczos may borrow a little from outside the crop
    assert (np.abs(inner - (0, 255, 0)) <= 2).all()
    assert arr[:, :, 1].min() > 200 and arr[:, :, 0].max() < 60 and arr[:, :, 2].max() < 60


def test_center_crop_of_tall_photo_matches_reference() -> None:
    data = enc(photo(size=(300, 451)), "PNG")
    spec = ImageSpec(size=64, resize_mode="center_crop")
    arr, _ = run(data, spec)
    assert psnr(arr, reference(data, spec)) >= 45


@pytest.mark.parametrize(("w", "h"), [(4 * S, 2 * S), (2 * S, 4 * S)])
def test_pad_bands_have_the_background_colour(w: int, h: int) -> None:
    img = Image.new("RGB", (w, h), (200, 100, 50))
    arr, out = run(enc(img, "PNG"), ImageSpec(size=S, resize_mode="pad", background=BG))
    assert out.status == "ok"
    band = S // 4  # content is S x S/2 (or S/2 x S), centred
    content = arr[band : S - band] if w > h else arr[:, band : S - band]
    bands = (arr[:band], arr[S - band :]) if w > h else (arr[:, :band], arr[:, S - band :])
    assert (content == (200, 100, 50)).all()
    for b in bands:
        assert (b == BG).all()


@pytest.mark.parametrize(("w", "h"), [(1101, 732), (732, 1101), (1265, 853)])
def test_pad_of_reduced_jpeg_keeps_the_original_aspect(w: int, h: int) -> None:
    # JPEG is decoded at 1/2..1/8 scale (draft) whose size rounds up; the content area must
    # still follow the source's aspect ratio, like the full-resolution reference.
    data = enc(photo(0, (w, h)), "JPEG", quality=90)
    spec = ImageSpec(size=64, resize_mode="pad", background=BG)
    arr, out = run(data, spec)
    ref = reference(data, spec)
    is_bg = (arr == BG).all(axis=2)
    ref_bg = (ref == BG).all(axis=2)
    axis = 1 if w > h else 0  # all-background rows (wide) or columns (tall)
    want_bands = 64 - round(min(w, h) * 64 / max(w, h))
    assert is_bg.all(axis=axis).sum() == ref_bg.all(axis=axis).sum() == want_bands
    assert psnr(arr, ref) >= 35


# --- tiny, extreme and large images -----------------------------------------------------------


@pytest.mark.parametrize("resize_mode", MODES)
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP"])
def test_one_pixel_image_fills_the_output(fmt: str, resize_mode: str) -> None:
    data = enc(Image.new("RGB", (1, 1), (0, 128, 255)), fmt)
    arr, out = run(data, ImageSpec(size=S, resize_mode=resize_mode))
    assert out.status == "ok" and (out.width, out.height) == (1, 1)
    with Image.open(io.BytesIO(data)) as im:
        want = np.asarray(im.convert("RGB"))[0, 0].astype(int)
    assert (np.abs(arr.astype(int) - want) <= 1).all()


@pytest.mark.parametrize("resize_mode", MODES)
@pytest.mark.parametrize(("w", "h"), [(5000, 3), (3, 5000)])
def test_extreme_aspect_ratio(w: int, h: int, resize_mode: str) -> None:
    img = Image.new("RGB", (w, h), (200, 100, 50))
    data = enc(img, "PNG")
    spec = ImageSpec(size=64, resize_mode=resize_mode, background=BG)
    arr, out = run(data, spec)
    again, _ = run(data, spec)
    assert out.status == "ok" and (out.width, out.height) == (w, h)
    assert arr.tobytes() == again.tobytes()
    content = ~(arr == BG).all(axis=2)
    if resize_mode == "pad":  # one line of content, the rest background
        assert content.sum() == 64
        assert (arr[content] == (200, 100, 50)).all()
    else:
        assert content.all() and (arr == (200, 100, 50)).all()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("fmt", "size"), [("JPEG", (8000, 6000)), ("PNG", (6000, 4000))])
def test_very_large_legal_image_is_deterministic(fmt: str, size: tuple[int, int]) -> None:
    src = photo(2)
    big = src.resize(size, Image.Resampling.BILINEAR)
    data = enc(big, fmt, **({"quality": 90} if fmt == "JPEG" else {"compress_level": 1}))
    assert size[0] * size[1] <= Image.MAX_IMAGE_PIXELS
    spec = ImageSpec(size=64)
    arr, out = run(data, spec)
    again, _ = run(data, spec)
    assert out.status == "ok" and (out.width, out.height) == size
    assert arr.tobytes() == again.tobytes()
    small = np.asarray(src.resize((64, 64), Image.Resampling.LANCZOS))
    assert psnr(arr, small) >= 35  # the same picture


# --- quality on real photos (the JPEG draft path) ---------------------------------------------


@pytest.fixture(scope="module")
def corpus() -> list[tuple[bytes, str]]:
    """Real photos as JPEG and PNG, 300-1500 px, fixed seed (imgbatch.sampledata.samples)."""
    rng = random.Random(0)
    return [samples.varied_image(rng) for _ in range(32)]


@pytest.mark.parametrize("resize_mode", MODES)
def test_quality_against_full_resolution_lanczos(
    corpus: list[tuple[bytes, str]], resize_mode: str
) -> None:
    spec = ImageSpec(size=64, resize_mode=resize_mode)
    scores: dict[str, list[float]] = {"jpg": [], "png": []}
    for data, ext in corpus:
        arr, out = run(data, spec)
        assert out.status == "ok"
        scores[ext].append(psnr(arr, reference(data, spec)))
    assert len(scores["jpg"]) >= 10 and len(scores["png"]) >= 5
    for ext, vals in scores.items():
        assert np.mean(vals) >= 35, (ext, np.mean(vals))
        assert min(vals) >= 35, (ext, min(vals))  # and no single photo below the bar


@pytest.mark.parametrize("resize_mode", MODES)
def test_standardize_is_deterministic(corpus: list[tuple[bytes, str]], resize_mode: str) -> None:
    spec = ImageSpec(size=32, resize_mode=resize_mode)
    for data, _ in corpus[:8]:
        assert run(data, spec)[0].tobytes() == run(data, spec)[0].tobytes()


# --- the fast path is a pure optimisation (IMGBATCH_FAST_DECODE, self-check) ------------------


def _tagged_png(where: str, orientation: int) -> bytes:
    """A plain RGB S x S PNG whose orientation is stored in `where`, as other tools write it."""
    img = _three_bands(S, S)
    exif = Image.Exif()
    exif[0x0112] = orientation
    raw = exif.tobytes()
    plain = enc(img, "PNG")
    if where == "XMP (exiftool)":
        xmp = f'<x:xmpmeta><rdf:Description tiff:Orientation="{orientation}"/></x:xmpmeta>'
        extra = chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp.encode())
        return _after_ihdr(plain, extra)
    if where == "Raw profile type exif (ImageMagick)":
        text = f"\nexif\n{len(raw):8d}\n{raw.hex()}\n".encode()
        return _after_ihdr(
            plain, chunk(b"zTXt", b"Raw profile type exif\x00\x00" + zlib.compress(text))
        )
    return _before_iend(plain, chunk(b"eXIf", raw[6:]))  # eXIf after the pixels


@pytest.mark.parametrize(
    "where", ["XMP (exiftool)", "Raw profile type exif (ImageMagick)", "eXIf after the pixels"]
)
@pytest.mark.parametrize("fast", [True, False])
def test_png_orientation_is_read_wherever_pillow_reads_it(where: str, fast: bool) -> None:
    img = _three_bands(S, S)
    got, out = standardize(_tagged_png(where, 6), SPEC, fast)
    want, _ = standardize(enc(img.transpose(Image.Transpose.ROTATE_270), "PNG"), SPEC, False)
    unturned, _ = standardize(enc(img, "PNG"), SPEC, False)
    assert out.status == "ok" and not np.array_equal(got, unturned)
    assert np.array_equal(got, want)


def _damaged_layouts() -> dict[str, bytes]:
    plain = enc(photo(size=(60, 40)), "PNG", compress_level=1)
    at = plain.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", plain[at : at + 4])
    body = plain[at + 8 : at + 8 + length]
    split = chunk(b"IDAT", body[:50]) + chunk(b"tEXt", b"Comment\x00x") + chunk(b"IDAT", body[50:])
    fctl = struct.pack(">IIIIIHHBB", 0, 30, 20, 0, 0, 1, 1, 0, 0)
    apng = chunk(b"acTL", struct.pack(">II", 1, 0)) + chunk(b"fcTL", fctl)
    return {
        "a text chunk between IDATs": plain[:at] + split + plain[at + 12 + length :],
        "a one-frame APNG smaller than its header": plain[:at] + apng + plain[at:],
    }


@pytest.mark.parametrize("case", sorted(_damaged_layouts()))
def test_png_layouts_pillow_calls_corrupt_are_corrupt_on_every_path(case: str) -> None:
    data = _damaged_layouts()[case]
    fast, slow = run(data), standardize(data, SPEC, False)
    assert fast[1] == slow[1] and fast[1].status == "corrupt"
    assert png_module().decode(data) is None  # the fast decoder does not take the layout


def png_module():
    from imgbatch.pixels import png

    return png


@pytest.mark.parametrize(
    ("value", "used"), [("0", False), ("off", False), ("1", True), (None, True)]
)
def test_the_switch_turns_every_fast_decode_off(value: str | None, used: bool, monkeypatch) -> None:
    png = png_module()
    if value is None:
        monkeypatch.delenv("IMGBATCH_FAST_DECODE", raising=False)
    else:
        monkeypatch.setenv("IMGBATCH_FAST_DECODE", value)
    decode, calls = png.decode, []
    monkeypatch.setattr(png, "decode", lambda d: calls.append(1) or decode(d))
    arr, out = run(enc(photo(size=(40, 30)), "PNG"))
    assert out.status == "ok" and arr.any()
    assert calls == ([1] if used else [])


def test_a_fast_path_that_differs_is_turned_off_with_one_log_line(monkeypatch, caplog) -> None:
    from imgbatch.pixels import images

    png = png_module()
    decode = png.decode

    def off_by_one(data: bytes):
        arr = decode(data)
        if arr is not None:
            arr[0, 0, 0] ^= 1
        return arr

    monkeypatch.setattr(images, "_fast_verified", None)  # a fresh worker process
    calls = []
    monkeypatch.setattr(png, "decode", lambda d: calls.append(1) or off_by_one(d))
    with caplog.at_level("WARNING", logger="imgbatch.pixels.images"):
        assert images._fast_path_verified() is False
        checked = len(calls)
        run(enc(photo(size=(40, 30)), "PNG"))
        run(enc(photo(size=(30, 40)), "PNG"))
    assert checked >= 1 and len(calls) == checked  # after the check: Pillow only
    lines = [r.getMessage() for r in caplog.records if r.name == "imgbatch.pixels.images"]
    assert len(lines) == 1 and "fast decoding off" in lines[0] and "PNG" in lines[0]


def test_the_self_check_passes_with_these_libraries(monkeypatch) -> None:
    from imgbatch.pixels import images

    monkeypatch.setattr(images, "_fast_verified", None)
    assert images._self_check() is True


def test_a_format_pillow_cannot_decode_is_rejected() -> None:
    """A DDS header naming a pixel format Pillow does not implement (NotImplementedError)."""
    header = struct.pack("<4sIIIIIII", b"DDS ", 124, 0x1007, 4, 4, 0, 0, 0) + bytes(44)
    header += struct.pack("<II4s", 32, 4, b"ZZZZ") + bytes(40)
    arr, out = run(header + bytes(64))
    assert out.status == "rejected"
    assert "not supported by Pillow" in out.error and "pixel format" in out.error


def test_importing_leaves_pillows_truncated_setting_alone() -> None:
    code = (
        "from PIL import ImageFile\nImageFile.LOAD_TRUNCATED_IMAGES = True\n"
        "import imgbatch.pixels.images, imgbatch.compute.partition\n"
        "print(ImageFile.LOAD_TRUNCATED_IMAGES)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "True"


def test_truncated_files_are_never_taken_while_a_caller_allows_them(monkeypatch) -> None:
    from PIL import ImageFile

    data = enc(photo(), "JPEG", quality=90)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # the caller's choice
    arr, out = run(data[: len(data) // 2])
    assert out.status == "error" and "LOAD_TRUNCATED_IMAGES" in out.error
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # left as the caller set it
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)
    assert run(data[: len(data) // 2])[1].status == "corrupt"
    assert run(data)[1].status == "ok"


@pytest.mark.parametrize("size", [64, 32, 16])
def test_a_progressive_jpeg_cut_in_a_late_scan_is_corrupt_at_every_size(size: int) -> None:
    """At 64 Pillow decodes this 1100 x 1030 file at 1/8, which reads no late AC scan's
    pixels; the row is flagged all the same, at every size."""
    data = enc(photo(0, (1100, 1030)), "JPEG", quality=90, progressive=True)
    arr, out = run(data[:-200], ImageSpec(size=size))
    assert out.status == "corrupt" and "truncated" in out.error
