"""The quality reference for standardization, in one place (tests and benchmarks use it).

Full-resolution decode (no JPEG draft), EXIF orientation applied, alpha composited over
the background, then one Lanczos resize in float geometry. Deliberately plain Pillow, written
independently of imgbatch.pixels.images, so it can disagree with it.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

from imgbatch.pixels.spec import ImageSpec

PSNR_CAP = 100.0  # dB reported for identical images (the true value is infinite)


def reference(data: bytes, spec: ImageSpec) -> np.ndarray:
    """uint8 (S, S, 3): the full-resolution Lanczos reference for `spec`."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        upright = ImageOps.exif_transpose(im)
    rgba = upright.convert("RGBA")
    under = Image.new("RGBA", rgba.size, (*spec.background, 255))
    rgb = Image.alpha_composite(under, rgba).convert("RGB")
    s, (w, h) = spec.size, rgb.size
    lanczos = Image.Resampling.LANCZOS
    if spec.resize_mode == "stretch":
        return np.asarray(rgb.resize((s, s), lanczos))
    if spec.resize_mode == "center_crop":
        side = min(w, h)
        left, top = (w - side) / 2, (h - side) / 2
        return np.asarray(rgb.resize((s, s), lanczos, box=(left, top, left + side, top + side)))
    scale = s / max(w, h)  # pad: longest side to s, centred on a background canvas
    fit = rgb.resize((max(1, round(w * scale)), max(1, round(h * scale))), lanczos)
    canvas = Image.new("RGB", (s, s), spec.background)
    canvas.paste(fit, ((s - fit.width) // 2, (s - fit.height) // 2))
    return np.asarray(canvas)


def notebook(source) -> np.ndarray:
    """The notebook's per-row code imgbatch replaces: the baseline every benchmark compares to.

    `source` is a path or a binary file object (what Image.open takes)."""
    return np.array(Image.open(source).convert("RGB").resize((64, 64)))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 arrays in dB, capped at PSNR_CAP."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * float(np.log10(255.0**2 / mse)))
