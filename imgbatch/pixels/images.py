"""Bytes in, one standardized uint8 (S, S, 3) array and an outcome out. Pure: no I/O.

The rules (README.md, "Image rules"): an allow-list of formats, the
decompression-bomb warning treated as an error, truncated files refused, EXIF orientation
applied, alpha composited over a background, 16-bit scaled (not clipped), and three resize
modes. A failure never raises: it returns a zero image and an outcome naming the reason.

Pillow decodes, except plain 8-bit PNGs laid out simply (imgbatch.pixels.png): a fast path that is a
pure optimisation, used only where it gives exactly what Pillow gives, and switched off by
IMGBATCH_FAST_DECODE=0 or by a failed self-check in this process (`_self_check`).
"""

from __future__ import annotations

import io
import logging
import os
import struct
import threading
from dataclasses import dataclass

import imagecodecs
import numpy as np
import PIL
from PIL import Image, ImageFile, UnidentifiedImageError, features

from imgbatch.pixels import png
from imgbatch.pixels.spec import ImageSpec

Image.init()
# Any other format Pillow can parse (EPS would even start Ghostscript) is refused unopened.
# MPO (multi-picture JPEG from phones) is its own plugin in older Pillow, part of JPEG in newer.
ALLOWED_FORMATS: tuple[str, ...] = tuple(
    f for f in ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF") if f in Image.OPEN
)
STATUSES: tuple[str, ...] = ("ok", "missing", "corrupt", "rejected", "error")
RESAMPLE = Image.Resampling.LANCZOS
# JPEG DCT scaling keeps at least this many times the target size, so quality holds.
DRAFT_FACTOR = 2
# "0" (or false/no/off) makes every decode Pillow's: to check a surprising row, and for tests.
FAST_DECODE_ENV = "IMGBATCH_FAST_DECODE"
_OFF = frozenset({"0", "false", "no", "off"})
# Pillow reads LOAD_TRUNCATED_IMAGES as one global at decode time (ImageFile and plugins), so
# it cannot be turned off for one decode without turning it off for every thread: the
# caller's setting is left alone, and a decode while it is on is refused.
TRUNCATED_ON = (
    "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on in this process: truncated files could not be "
    "refused, so no image is decoded while it is on"
)
log = logging.getLogger(__name__)
_check_lock = threading.Lock()


_fast_verified: bool | None = None  # this process's self-check: None until it has run

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class Outcome:
    """What happened to one row; width/height are the source's (0 when unknown)."""

    status: str
    error: str = ""
    width: int = 0
    height: int = 0


class _Refused(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def fast_decode_requested() -> bool:
    """The IMGBATCH_FAST_DECODE switch (on unless set to 0), read at every call."""
    return os.environ.get(FAST_DECODE_ENV, "1").strip().lower() not in _OFF


def pixel_libraries() -> dict[str, str | bool | None]:
    """The library versions and the switch that decide pixels (part of every fingerprint):
    Pillow (resize, draft), the libjpeg and zlib it was built with, and imagecodecs (libspng,
    zlib-ng) while the fast path is requested."""
    fast = fast_decode_requested()
    return {
        "pillow": PIL.__version__,
        "libjpeg": features.version("jpg"),
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "zlib": features.version("zlib"),
        "imagecodecs": imagecodecs.__version__ if fast else None,
        "fast_decode": fast,
    }


def standardize(
    data: bytes, spec: ImageSpec, fast: bool | None = None
) -> tuple[np.ndarray, Outcome]:
    """Decode and standardize one image; never raises for bad input. `fast` None: the switch
    and this process's self-check decide; False: Pillow only; True: the fast path unchecked."""
    if fast is None:
        fast = fast_decode_requested() and _fast_path_verified()
    size = (0, 0)
    try:
        if ImageFile.LOAD_TRUNCATED_IMAGES:
            raise _Refused("error", TRUNCATED_ON)
        with _open(data) as img:
            size = img.size
            arr = _to_array(img, data, spec, fast)
        return arr, Outcome("ok", "", *size)
    except _Refused as exc:
        return blank(spec), Outcome(exc.status, str(exc), *size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return blank(spec), Outcome("rejected", f"decompression bomb guard: {exc}", *size)
    except NotImplementedError as exc:  # a variant of a format Pillow cannot decode
        reason = f"not supported by Pillow: {_one_line(exc)}"
        return blank(spec), Outcome("rejected", reason, *size)
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        return blank(spec), Outcome("corrupt", _one_line(exc), *size)
    except Exception as exc:  # noqa: BLE001 - a bad image must never fail its partition
        return blank(spec), Outcome("error", f"{type(exc).__name__}: {_one_line(exc)}", *size)


def _fast_path_verified() -> bool:
    """Once per process: the fast path gives Pillow's rows on files made here, or it is off."""
    global _fast_verified
    if _fast_verified is None:
        with _check_lock:
            if _fast_verified is None:
                _fast_verified = _self_check()
    return _fast_verified


def _self_check() -> bool:
    """Standardize a progressive JPEG (decoded at 1/8) and plain PNGs both ways; any
    difference (a library build that decodes otherwise) turns the fast path off here."""
    try:
        for name, data, spec in _check_files():
            fast, slow = standardize(data, spec, True), standardize(data, spec, False)
            if fast[1] != slow[1] or not np.array_equal(fast[0], slow[0]):
                log.warning(
                    "imgbatch: fast decoding off in process %d: the %s self-check "
                    "differs from Pillow's (%s vs %s)",
                    os.getpid(),
                    name,
                    fast[1],
                    slow[1],
                )
                return False
    except Exception as exc:  # noqa: BLE001 - a check that cannot run proves nothing
        log.warning(
            "imgbatch: fast decoding off in process %d: self-check failed: %s",
            os.getpid(),
            _one_line(exc),
        )
        return False
    return True


def _check_files() -> list[tuple[str, bytes, ImageSpec]]:
    """Small images made in memory from a fixed pattern (no randomness)."""
    y, x = np.mgrid[0:192, 0:256]
    rgb = np.stack([x, y * 4 // 3, (x * y) >> 7], axis=2) % 256
    rgb = (rgb ^ ((x // 9 + y // 7) % 2 * 60)[:, :, None]).astype(np.uint8)
    rgba = np.concatenate([rgb, (x + y)[:, :, None].astype(np.uint8)], axis=2)
    files = []
    for name, arr, fmt, options in (
        ("progressive JPEG", rgb, "JPEG", {"progressive": True, "quality": 85}),
        ("RGB PNG", rgb[:40, :48], "PNG", {}),
        ("RGBA PNG", rgba[:37, :53], "PNG", {}),
        ("grey PNG", rgb[:33, :29, 1], "PNG", {}),
    ):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, fmt, **options)
        files.append((name, buf.getvalue(), ImageSpec(size=16)))
    return files


def blank(spec: ImageSpec) -> np.ndarray:
    """The zero row that stands in for a failed image."""
    return np.zeros((spec.size, spec.size, 3), dtype=np.uint8)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def _open(data: bytes) -> Image.Image:
    if not data:
        raise _Refused("corrupt", "empty file (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        pass
    else:
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; we refuse (README).
        limit = Image.MAX_IMAGE_PIXELS
        if limit and img.width * img.height > limit:
            img.close()
            raise _Refused(
                "rejected", f"{img.width}x{img.height} exceeds the decompression bomb guard"
            )
        return img
    try:  # Header only: tell "a format we refuse" from "not an image at all".
        with Image.open(io.BytesIO(data)) as other:
            fmt = other.format
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise _Refused("corrupt", "not a recognised image (unknown or damaged header)") from None
    except NotImplementedError as exc:  # e.g. a DDS pixel format Pillow does not implement
        raise _Refused("rejected", f"not supported by Pillow: {_one_line(exc)}") from None
    raise _Refused("rejected", f"format {fmt} is not allowed")


def _to_array(img: Image.Image, data: bytes, spec: ImageSpec, fast: bool) -> np.ndarray:
    s = spec.size
    box = None
    if img.format in ("JPEG", "MPO"):
        img, box = _draft(img, s * DRAFT_FACTOR)
    plain = _plain_png(img, data) if fast else None
    if plain is None:
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        img.load()  # a decode error is the file's (corrupt), never taken for damaged EXIF
        orientation = _orientation(img)
    else:
        # png.decode took only files with nothing after the image data, so Pillow's open
        # already read every chunk it would take orientation from (eXIf, XMP, text).
        orientation = _orientation(img, unloaded_png=True)
        img = plain
    img = _normalize_mode(img)
    small = _resize(img, spec, box)
    if orientation in _TRANSPOSE:
        small = small.transpose(_TRANSPOSE[orientation])
    arr = _composite(small, spec.background)
    if spec.resize_mode == "pad":
        arr = _pad(arr, s, spec.background)
    return arr


def _draft(img: Image.Image, least: int) -> tuple[Image.Image, tuple | None]:
    """The JPEG set to decode at the smallest DCT scale that keeps `least` pixels a side, and
    the exact extent of the full image in it (the reduced last row/column is partial, so
    geometry and aspect match the full image)."""
    drafted = img.draft("RGB", (least, least))
    if drafted is None:
        return img, None
    return img, drafted[1]


def _plain_png(img: Image.Image, data: bytes) -> Image.Image | None:
    """An 8-bit L, RGB or RGBA PNG decoded by imgbatch.pixels.png: Pillow's pixels for about half
    its CPU (docs/decisions/fast-decoders.md). None for any other PNG, any layout png.decode
    does not take, or any file that does not decode cleanly there: Pillow then decodes it,
    so its outcomes and reasons stay the rule."""
    if (
        img.format != "PNG"
        or img.mode not in ("L", "RGB", "RGBA")
        or [t.args for t in img.tile] != [img.mode]  # not 16-bit, palette or low bit depth
        or img.info.get("interlace")
        or getattr(img, "n_frames", 1) > 1
    ):
        return None
    arr = png.decode(data)
    if arr is None or arr.shape[:2] != (img.height, img.width):
        return None
    out = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)  # L, RGB or RGBA
    return out if out.mode == img.mode else None


def _orientation(img: Image.Image, unloaded_png: bool = False) -> int:
    """EXIF orientation, from wherever Pillow finds it (EXIF, XMP, PNG text chunks). For a PNG
    whose pixels Pillow did not load, Image's own getexif reads the same info without the
    decode PngImageFile.getexif would start."""
    try:
        exif = Image.Image.getexif(img) if unloaded_png else img.getexif()
        return int(exif.get(0x0112, 1))
    except Exception:  # noqa: BLE001 - damaged EXIF: keep the pixels, skip the rotation
        return 1


def _normalize_mode(img: Image.Image) -> Image.Image:
    """Reduce a decoded image of any mode to L, LA, RGB or RGBA (alpha still separate)."""
    mode = img.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return img
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(img, dtype=np.int64)
        return Image.fromarray((np.clip(a, 0, 65535) >> 8).astype(np.uint8), "L")
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
        if a.size and a.max() <= 1.0:
            a = a * 255.0
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    if mode == "P":
        has_alpha = "transparency" in img.info or img.palette.mode == "RGBA"
        return img.convert("RGBA" if has_alpha else "RGB")
    if mode in ("PA", "RGBa", "RGBX"):
        return img.convert("RGBA" if mode != "RGBX" else "RGB")
    if mode == "La":
        return img.convert("LA")
    if mode == "1":
        return img.convert("L")
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV


def _resize(
    img: Image.Image, spec: ImageSpec, box: tuple[float, float, float, float] | None = None
) -> Image.Image:
    """Lanczos resize per mode; big sources are first box-reduced to >= 2x the target
    (Pillow's reducing_gap), the same quality rule as the JPEG draft, for PNG & co."""
    s = spec.size
    x0, y0, x1, y1 = box or (0, 0, *img.size)
    w, h = x1 - x0, y1 - y0
    if spec.resize_mode == "stretch":
        size = (s, s)
    elif spec.resize_mode == "center_crop":
        side = min(w, h)
        x0, y0 = x0 + (w - side) / 2, y0 + (h - side) / 2
        x1, y1 = x0 + side, y0 + side
        size = (s, s)
    else:  # pad: longest side to s; the short side keeps the aspect ratio (at least 1 pixel)
        scale = s / max(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img.resize(size, RESAMPLE, box=(x0, y0, x1, y1), reducing_gap=DRAFT_FACTOR)


def _composite(img: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
    """uint8 (h, w, 3): gray widened, alpha blended over the background."""
    a = np.asarray(img)
    if img.mode == "L":
        return np.repeat(a[:, :, None], 3, axis=2)
    if img.mode == "RGB":
        return np.ascontiguousarray(a)
    color = a[:, :, :-1].astype(np.float32)
    if color.shape[2] == 1:
        color = np.repeat(color, 3, axis=2)
    alpha = a[:, :, -1:].astype(np.float32) / 255.0
    bg = np.asarray(background, dtype=np.float32)
    out = color * alpha + bg * (1.0 - alpha)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _pad(arr: np.ndarray, s: int, background: tuple[int, int, int]) -> np.ndarray:
    h, w = arr.shape[:2]
    canvas = np.empty((s, s, 3), dtype=np.uint8)
    canvas[:] = np.asarray(background, dtype=np.uint8)
    top, left = (s - h) // 2, (s - w) // 2
    canvas[top : top + h, left : left + w] = arr
    return canvas
