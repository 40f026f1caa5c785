"""imgbatch.pixels.png: every PNG row filter, for every plain colour type, gives Pillow's pixels;
anything it does not decode cleanly is left to Pillow (None), never decoded wrong.

The files are written here with a reference filter (numpy, from the PNG specification's
formulas), so each filter type is exercised on purpose rather than as an encoder happens to
choose; the pixels come from a real photo.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from helpers.png_chunks import chunk
from PIL import Image

from imgbatch.pixels import png
from imgbatch.pixels.images import standardize
from imgbatch.pixels.spec import ImageSpec
from imgbatch.sampledata import samples

COLOUR_TYPES = {"L": 0, "RGB": 2, "RGBA": 6}


def pixels(mode: str, size: tuple[int, int] = (37, 23)) -> np.ndarray:
    """(h, w, channels) uint8 of a real photo in `mode` (RGBA: the logo's real alpha)."""
    src = samples.rgba_photos()[0] if mode == "RGBA" else samples.photos()[1]
    arr = np.asarray(src.convert(mode).resize(size, Image.Resampling.LANCZOS))
    return arr.reshape(size[1], size[0], -1)


def filtered(rows: np.ndarray, kinds: list[int]) -> bytes:
    """The PNG filter stream of `rows` (h, w, c), row y filtered with kinds[y]."""
    h, w, bpp = rows.shape
    flat = rows.reshape(h, w * bpp).astype(np.int32)
    out = bytearray()
    for y, kind in enumerate(kinds):
        x = flat[y]
        up = flat[y - 1] if y else np.zeros_like(x)
        left = np.concatenate([np.zeros(bpp, np.int32), x[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int32), up[:-bpp]])
        if kind == 0:
            pred = np.zeros_like(x)
        elif kind == 1:
            pred = left
        elif kind == 2:
            pred = up
        elif kind == 3:
            pred = (left + up) // 2
        else:
            p = left + up - upleft
            pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
        out.append(kind)
        out += ((x - pred) & 255).astype(np.uint8).tobytes()
    return bytes(out)


def png_file(rows: np.ndarray, mode: str, stream: bytes, idat_size: int = 0) -> bytes:
    """A PNG of `rows` whose deflated filter stream is `stream`, in IDATs of idat_size."""
    h, w = rows.shape[:2]
    ihdr = struct.pack(">IIBBBBB", w, h, 8, COLOUR_TYPES[mode], 0, 0, 0)
    data = zlib.compress(stream)
    step = idat_size or len(data)
    idats = b"".join(chunk(b"IDAT", data[i : i + step]) for i in range(0, len(data), step))
    return png.SIGNATURE + chunk(b"IHDR", ihdr) + idats + chunk(b"IEND", b"")


def pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        arr = np.asarray(im)
    return arr.reshape(arr.shape[0], arr.shape[1], -1)


@pytest.mark.parametrize("mode", sorted(COLOUR_TYPES))
@pytest.mark.parametrize("kinds", ["0", "1", "2", "3", "4", "mixed"])
def test_every_filter_decodes_to_pillows_pixels(mode: str, kinds: str) -> None:
    rows = pixels(mode)
    h = rows.shape[0]
    row_kinds = [y % 5 for y in range(h)] if kinds == "mixed" else [int(kinds)] * h
    data = png_file(rows, mode, filtered(rows, row_kinds))
    got = png.decode(data)
    assert got is not None
    assert np.array_equal(got, rows)
    assert np.array_equal(got, pillow(data))


def test_many_small_idat_chunks_are_joined() -> None:
    rows = pixels("RGBA", (64, 40))
    data = png_file(rows, "RGBA", filtered(rows, [4] * 40), idat_size=97)
    assert data.count(b"IDAT") > 10
    assert np.array_equal(png.decode(data), rows)


def test_a_real_encoders_file_decodes_to_pillows_pixels() -> None:
    img = samples.photos()[0].resize((300, 300))  # Pillow's own adaptive filtering
    buf = io.BytesIO()
    img.save(buf, "PNG")
    assert np.array_equal(png.decode(buf.getvalue()), pillow(buf.getvalue()))


def _unclean() -> dict[str, bytes]:
    rows = pixels("RGB")
    h = rows.shape[0]
    stream = filtered(rows, [4] * h)
    good = png_file(rows, "RGB", stream)
    bad_kind = bytearray(stream)
    bad_kind[(h // 2) * (rows.shape[1] * 3 + 1)] = 5  # filter type 5 does not exist
    return {
        "unknown filter type": png_file(rows, "RGB", bytes(bad_kind)),
        "rows missing": png_file(rows, "RGB", stream[: len(stream) // 2]),
        "extra bytes in the stream": png_file(rows, "RGB", stream + b"\x00" * 50),
        "truncated file": good[: len(good) - 40],
        "flipped byte in IDAT": good[:60] + bytes([good[60] ^ 0xFF]) + good[61:],
        "16-bit": good.replace(
            chunk(b"IHDR", struct.pack(">IIBBBBB", rows.shape[1], h, 8, 2, 0, 0, 0)),
            chunk(b"IHDR", struct.pack(">IIBBBBB", rows.shape[1], h, 16, 2, 0, 0, 0)),
        ),
        "JPEG bytes": b"\xff\xd8\xff\xe0" + b"\x00" * 100,
    }


@pytest.mark.parametrize("case", sorted(_unclean()))
def test_what_does_not_decode_cleanly_is_left_to_pillow(case: str, monkeypatch) -> None:
    """None here, so standardize gives exactly Pillow's outcome for the file."""
    from imgbatch.pixels import images

    data = _unclean()[case]
    assert png.decode(data) is None
    spec = ImageSpec(size=16)
    got, out = standardize(data, spec)
    monkeypatch.setattr(images, "_plain_png", lambda img, data: None)
    want, pillow_out = standardize(data, spec)
    assert out == pillow_out
    assert np.array_equal(got, want)


@pytest.mark.parametrize("height", [255, 510])
def test_a_stream_of_exactly_whole_blocks(height: int) -> None:
    """255 rows of a 256-pixel grey image are 65,535 bytes: one full stored block, final."""
    rows = pixels("L", (256, height))
    data = png_file(rows, "L", filtered(rows, [y % 5 for y in range(height)]))
    assert height * (256 + 1) % png.BLOCK == 0
    assert np.array_equal(png.decode(data), rows)


@pytest.mark.parametrize(
    "size", [1, png.BLOCK - 1, png.BLOCK, png.BLOCK + 1, 2 * png.BLOCK, 2 * png.BLOCK + 7]
)
def test_the_file_handed_to_libspng_is_a_valid_png(size: int) -> None:
    """Its IDAT is a complete zlib stream of stored blocks (final block flagged, Adler-32
    right) with a right CRC: zlib itself, stricter than a PNG decoder that stops once it
    has every row, gives the bytes back."""
    raw = bytes(np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8))
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    out = png._stored_png(ihdr, raw).tobytes()
    assert out.startswith(png.SIGNATURE + ihdr) and out.endswith(chunk(b"IEND", b""))
    at = len(png.SIGNATURE) + len(ihdr)
    (length,) = struct.unpack_from(">I", out, at)
    body = out[at + 8 : at + 8 + length]
    assert out[at + 4 : at + 8] == b"IDAT"
    assert out[at + 8 + length : at + 12 + length] == struct.pack(">I", zlib.crc32(b"IDAT" + body))
    assert zlib.decompress(body) == raw


def test_a_huge_image_is_inflated_by_libspng_itself(monkeypatch) -> None:
    """Above MAX_INFLATED the stream is not inflated here (no second image-sized buffer);
    the pixels are the same."""
    rows = pixels("RGB", (64, 40))
    data = png_file(rows, "RGB", filtered(rows, [4] * 40))
    inflated = []
    decode = png.imagecodecs.zlibng_decode
    monkeypatch.setattr(
        png.imagecodecs, "zlibng_decode", lambda *a, **k: inflated.append(1) or decode(*a, **k)
    )
    monkeypatch.setattr(png, "MAX_INFLATED", 40 * (64 * 3 + 1) - 1)
    assert np.array_equal(png.decode(data), rows)
    assert inflated == []
    monkeypatch.setattr(png, "MAX_INFLATED", 40 * (64 * 3 + 1))
    assert np.array_equal(png.decode(data), rows)
    assert inflated == [1]
