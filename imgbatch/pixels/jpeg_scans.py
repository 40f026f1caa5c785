"""A progressive JPEG cut down to the scans that a 1/8-scale decode reads.

Why: a progressive JPEG is a sequence of scans, each one band of DCT coefficients of one
component, and libjpeg entropy-decodes every scan whatever the output scale. At 1/8 scale
a component sampled at the frame's full rate is rebuilt from its DC coefficients alone
(a 1x1 inverse DCT), so its later AC scans cost most of the decode and change no output
pixel. Cutting them decodes the same pixels for about 40% of the CPU
(`benchmarks.decoders`, README "Decisions"); the tests compare every byte with a full
decode.

Kept for such a component: its DC scans and its first AC scan of the lowest band (with
only DC known, libjpeg-turbo's block smoothing would estimate, and so change, the DC
values). Components at a lower rate (the chroma of 4:2:0) use a larger inverse DCT at 1/8
scale and keep every scan. Anything unusual gives None, and the file is decoded whole.
"""

from __future__ import annotations

import re
import struct

SOI, EOI, SOF2, SOS = 0xD8, 0xD9, 0xC2, 0xDA
# Frame types other than progressive Huffman (SOF2): left to the plain decode.
OTHER_FRAMES = frozenset({0xC0, 0xC1, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markers with no length (and a fill byte) between segments: unusual, so decoded whole.
STANDALONE = frozenset({0x01, *range(0xD0, 0xD9), 0xFF})
# Where entropy-coded data ends: a marker that is not a stuffed 0xFF00, a restart or a fill byte.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def dc_scans_only(data: bytes) -> bytes | None:
    """The same progressive JPEG without the AC scans a 1/8-scale decode ignores, or None
    when there is nothing to drop or the file is not plainly laid out."""
    try:
        return _cut(data)
    except (IndexError, struct.error, ValueError):
        return None


def _cut(data: bytes) -> bytes | None:
    if data[0] != 0xFF or data[1] != SOI:
        return None
    pos, kept, full, first_bands, dropped = 2, [data[:2]], None, set(), False
    while True:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == EOI:
            kept.append(data[pos : pos + 2])
            break
        if marker in OTHER_FRAMES or marker in STANDALONE:
            return None
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if marker == SOF2:
            full = _full_rate_components(data[pos + 4 : end])
        if marker != SOS:
            kept.append(data[pos:end])
            pos = end
            continue
        if full is None:
            return None
        found = _NEXT_MARKER.search(data, end)
        if found is None:  # cut short: the plain decode says so
            return None
        scan = data[pos + 4 : end]  # Ns, then (component, tables) each, Ss, Se, Ah/Al
        components = [scan[1 + 2 * i] for i in range(scan[0])]
        ss, ah = scan[-3], scan[-1] >> 4
        single = components[0] if len(components) == 1 else None
        if single in full and ss > 0 and (ss, ah) != (1, 0):
            dropped = True
        else:
            if single in full and (ss, ah) == (1, 0):
                first_bands.add(single)
            kept.append(data[pos : found.start()])
        pos = found.start()
    if not dropped or first_bands != full:
        return None
    return b"".join(kept)


def _full_rate_components(frame: bytes) -> set[int]:
    """Ids of the components sampled at the frame's highest rate (1x1 IDCT at 1/8 scale)."""
    count = frame[5]
    comps = [(frame[6 + 3 * i], frame[7 + 3 * i]) for i in range(count)]
    h = max(hv >> 4 for _, hv in comps)
    v = max(hv & 15 for _, hv in comps)
    return {cid for cid, hv in comps if hv >> 4 == h and hv & 15 == v}
