"""Plain 8-bit PNGs (grey, RGB, RGBA; not interlaced) decoded by libspng, with their image
data inflated by zlib-ng first.

Why: libspng (imagecodecs) decodes the same pixels as Pillow for less CPU, but both inflate
through the system zlib, which is most of a PNG's decode time on these machines (libspng:
3.6 CPU-s for the end-to-end corpus's 313 PNGs, 2.5 of them in zlib). Here the IDAT stream
is inflated by zlib-ng (imagecodecs.zlibng_decode: 0.7 CPU-s) and handed to libspng in
stored (uncompressed) deflate blocks, which its zlib only copies; libspng still checks
the file and undoes the row filters. `benchmarks.decoders` measures it against both and
checks every pixel.

Only one layout is taken: IHDR first, the IDAT chunks in one unbroken run, and IEND right
after it. Anything Pillow treats specially after the image data (text chunks that carry
orientation, an eXIf chunk, a chunk between IDATs that Pillow reads as a truncated file) or
anywhere (APNG's acTL/fcTL/fdAT) gives None, and so does any file that does not decode
cleanly here: the caller then leaves the file to Pillow, whose outcome (and error message)
stays the rule. A huge image (over MAX_INFLATED) is left to libspng's own inflate, which
holds less memory.
"""

from __future__ import annotations

import struct

import imagecodecs
import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 6: 4}  # colour type -> samples per pixel (grey, RGB, RGBA)
BLOCK = 65535  # the largest stored deflate block
# Above this many inflated bytes libspng inflates the file itself: the detour holds the image
# data twice, which for a huge PNG on every decode worker at once would be gigabytes.
MAX_INFLATED = 64 << 20
_IEND = b"\x00\x00\x00\x00IEND\xae\x42\x60\x82"
ANIMATION = frozenset({b"acTL", b"fcTL", b"fdAT"})


def decode(data: bytes) -> np.ndarray | None:
    """uint8 (h, w, channels) of a plain 8-bit PNG, or None (not plain, or not clean)."""
    try:
        ihdr, stream = _chunks(data)
        width, height, depth, colour, compression, filtering, interlace = struct.unpack(
            ">IIBBBBB", ihdr[8:21]
        )
        channels = CHANNELS.get(colour)
        if depth != 8 or channels is None or compression or filtering or interlace:
            return None
        size = height * (width * channels + 1)  # each row: its filter byte, then its samples
        if size > MAX_INFLATED:
            arr = imagecodecs.spng_decode(data)
        else:
            raw = imagecodecs.zlibng_decode(stream, out=size)
            if len(raw) != size:
                return None
            stored = _stored_png(ihdr, raw)
            del raw  # at most two image-sized buffers at once
            arr = imagecodecs.spng_decode(stored)
    except Exception:  # noqa: BLE001 - damaged or unusual: Pillow decides what it is
        return None
    if arr.dtype != np.uint8 or arr.size != height * width * channels:
        return None
    return arr.reshape(height, width, channels)


def _chunks(data: bytes) -> tuple[bytes, bytes]:
    """The IHDR chunk and the joined IDAT data of a file laid out as the module docstring
    says; raises on any other layout or a damaged chunk list."""
    if not data.startswith(SIGNATURE):
        raise ValueError("not a PNG")
    pos, ihdr, parts = len(SIGNATURE), b"", []
    while True:
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length  # length, type, body, crc
        if end > len(data):
            raise ValueError("truncated chunk")
        if pos == len(SIGNATURE):
            if kind != b"IHDR" or length != 13:
                raise ValueError("IHDR is not the first chunk")
            ihdr = data[pos:end]
        elif kind == b"IDAT":
            parts.append(data[pos + 8 : end - 4])
        elif kind == b"IEND":
            break
        elif parts or kind in ANIMATION or kind == b"IHDR":  # so the IDATs are one run, too
            raise ValueError(f"{kind!r} after image data, in an animation, or a second IHDR")
        pos = end
    if not parts:
        raise ValueError("no IDAT")
    return ihdr, b"".join(parts)


def _stored_png(ihdr: bytes, raw: bytes) -> np.ndarray:
    """A PNG of IHDR, one IDAT holding `raw` as a zlib stream of stored blocks, and IEND."""
    full, rest = divmod(len(raw), BLOCK)
    blocks = full + (1 if rest or not full else 0)
    zlen = 2 + len(raw) + 5 * blocks + 4
    head = SIGNATURE + ihdr + struct.pack(">I", zlen) + b"IDAT"
    out = np.empty(len(head) + zlen + 4 + len(_IEND), np.uint8)
    out[: len(head)] = np.frombuffer(head, np.uint8)
    z = out[len(head) : len(head) + zlen]
    z[:2] = (0x78, 0x01)  # zlib header: deflate, 32 KiB window, no dictionary
    src = np.frombuffer(raw, np.uint8)
    if full:
        rows = z[2 : 2 + full * (BLOCK + 5)].reshape(full, BLOCK + 5)
        rows[:, :5] = np.frombuffer(_block_header(BLOCK, final=False), np.uint8)
        rows[:, 5:] = src[: full * BLOCK].reshape(full, BLOCK)
    if blocks > full:
        tail = z[2 + full * (BLOCK + 5) : -4]
        tail[:5] = np.frombuffer(_block_header(rest, final=True), np.uint8)
        tail[5:] = src[full * BLOCK :]
    else:
        rows[-1, 0] = 1  # the last full block is the final one
    z[-4:] = np.frombuffer(struct.pack(">I", imagecodecs.deflate_adler32(raw)), np.uint8)
    crc = imagecodecs.deflate_crc32(z, imagecodecs.deflate_crc32(b"IDAT"))
    end = len(head) + zlen
    out[end : end + 4] = np.frombuffer(struct.pack(">I", crc), np.uint8)
    out[end + 4 :] = np.frombuffer(_IEND, np.uint8)
    return out


def _block_header(length: int, final: bool) -> bytes:
    return struct.pack("<BHH", int(final), length, length ^ 0xFFFF)
