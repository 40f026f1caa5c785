"""Seeded damage and unusual layouts for PNG and JPEG files, at the level a decoder sees:
bytes (flips, truncation), PNG chunks and JPEG scans (inserted, duplicated, dropped,
shortened, broken headers), and orientation stored where only some readers look (XMP,
ImageMagick's raw EXIF text chunk, an eXIf chunk after the pixels)."""

from __future__ import annotations

import random
import struct
import zlib

from PIL import Image

from helpers.png_chunks import chunk

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of each chunk up to IEND; raises on a damaged chunk list."""
    pos, out = len(PNG_SIGNATURE), []
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        out.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
        if kind == b"IEND":
            break
    return out


def build_png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return PNG_SIGNATURE + b"".join(chunk(k, b) for k, b in chunks)


def exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def _idat_at(chunks: list) -> int:
    return next(i for i, (k, _) in enumerate(chunks) if k == b"IDAT")


def _png_mutation(kind: str, data: bytes, rng: random.Random) -> bytes:
    chunks = png_chunks(data)
    first = _idat_at(chunks)
    last = max(i for i, (k, _) in enumerate(chunks) if k == b"IDAT")
    text = (b"tEXt", b"Comment\x00" + bytes(rng.randrange(32, 127) for _ in range(12)))
    if kind == "text-between-idat":
        body = chunks[first][1]
        cut = rng.randrange(1, max(2, len(body)))
        chunks[first : first + 1] = [(b"IDAT", body[:cut]), text, (b"IDAT", body[cut:])]
    elif kind == "idat-split":
        body = b"".join(b for k, b in chunks if k == b"IDAT")
        step = rng.choice((1, 7, 100))
        parts = [(b"IDAT", body[i : i + step]) for i in range(0, len(body), step)]
        chunks = [c for c in chunks if c[0] != b"IDAT"]
        chunks[first:first] = parts
    elif kind == "text-after-idat":
        chunks.insert(last + 1, text)
    elif kind == "exif-after-idat":
        chunks.insert(last + 1, (b"eXIf", exif_orientation(rng.choice((3, 6, 8)))[6:]))
    elif kind == "xmp-orientation":
        xmp = f'<x:xmpmeta><rdf:Description tiff:Orientation="{rng.choice((2, 6, 8))}"/>'
        chunks.insert(first, (b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp.encode()))
    elif kind == "raw-profile-exif":
        raw = exif_orientation(rng.choice((3, 5, 7))).hex()
        body = f"\nexif\n{len(raw) // 2:8d}\n{raw}\n".encode()
        chunks.insert(first, (b"tEXt", b"Raw profile type exif\x00" + body))
    elif kind == "apng-small-frame":
        w, h = struct.unpack(">II", chunks[0][1][:8])
        fctl = struct.pack(">IIIIIHHBB", 0, max(1, w // 2), max(1, h // 2), 0, 0, 1, 1, 0, 0)
        chunks[first:first] = [(b"acTL", struct.pack(">II", 1, 0)), (b"fcTL", fctl)]
    elif kind == "duplicate-chunk":
        i = rng.randrange(len(chunks))
        chunks.insert(i, chunks[i])
    elif kind == "drop-chunk":
        del chunks[rng.randrange(1, len(chunks))]
    elif kind == "bad-adler":
        body = bytearray(chunks[last][1])
        if body:
            body[-1] ^= 0x5A
        chunks[last] = (b"IDAT", bytes(body))
    elif kind == "trailing-garbage":
        return build_png(chunks) + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
    return build_png(chunks)


def jpeg_segments(data: bytes) -> list[bytes]:
    """The file as marker segments, each SOS with its entropy-coded data; raises if unusual."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    pos, out = 2, [data[:2]]
    while pos < len(data):
        if data[pos] != 0xFF:
            raise ValueError("no marker")
        marker = data[pos + 1]
        if marker == 0xD9:
            out.append(data[pos : pos + 2])
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if marker == 0xDA:
            while end < len(data) - 1 and not (
                data[end] == 0xFF and data[end + 1] not in (0, *range(0xD0, 0xD8))
            ):
                end += 1
        out.append(data[pos:end])
        pos = end
    return out


def _jpeg_mutation(kind: str, data: bytes, rng: random.Random) -> bytes:
    segs = jpeg_segments(data)
    scans = [i for i, s in enumerate(segs) if s[1] == 0xDA]
    i = rng.choice(scans)
    if kind == "duplicate-scan":
        segs.insert(i, segs[i])
    elif kind == "drop-scan":
        del segs[i]
    elif kind == "move-scan":
        seg = segs.pop(i)
        segs.insert(rng.choice(scans[:-1] or scans), seg)
    elif kind == "broken-scan-header":
        seg = bytearray(segs[i])
        length = struct.unpack_from(">H", seg, 2)[0]
        at = rng.randrange(4, 2 + length)
        seg[at] = rng.choice((0x00, 0x3F, 0x40, 0xFF, seg[at] ^ 0x11))
        segs[i] = bytes(seg)
    elif kind == "shortened-scan":
        seg = segs[i]
        head = 2 + struct.unpack_from(">H", seg, 2)[0]
        if len(seg) > head + 4:
            a = rng.randrange(head, len(seg) - 2)
            b = rng.randrange(a + 1, len(seg))
            segs[i] = seg[:a] + seg[b:]
    elif kind == "truncate-in-scan":
        seg = segs[i]
        return b"".join(segs[:i]) + seg[: rng.randrange(4, max(5, len(seg)))]
    return b"".join(segs)


def _bytes_mutation(kind: str, data: bytes, rng: random.Random) -> bytes:
    if kind == "truncate":
        return data[: rng.randrange(1, len(data))]
    out = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        at = rng.randrange(min(len(out), 8), len(out)) if len(out) > 8 else 0
        out[at] ^= 1 << rng.randrange(8)
    return bytes(out)


PNG_KINDS = (
    "text-between-idat", "idat-split", "text-after-idat", "exif-after-idat", "xmp-orientation",
    "raw-profile-exif", "apng-small-frame", "duplicate-chunk", "drop-chunk", "bad-adler",
    "trailing-garbage",
)  # fmt: skip
JPEG_KINDS = (
    "duplicate-scan", "drop-scan", "move-scan", "broken-scan-header", "shortened-scan",
    "truncate-in-scan",
)  # fmt: skip
BYTE_KINDS = ("flip", "truncate")


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes] | None:
    """One seeded mutation of a PNG or JPEG file: (kind, new bytes), or None if not one."""
    if data.startswith(PNG_SIGNATURE):
        kinds = PNG_KINDS
    elif data[:2] == b"\xff\xd8":
        kinds = JPEG_KINDS
    else:
        return None
    kind = rng.choice(kinds + BYTE_KINDS)
    try:
        if kind in BYTE_KINDS:
            return kind, _bytes_mutation(kind, data, rng)
        op = _png_mutation if kinds is PNG_KINDS else _jpeg_mutation
        return kind, op(kind, data, rng)
    except (ValueError, IndexError, StopIteration, struct.error, zlib.error):
        return kind, _bytes_mutation("flip", data, rng)
