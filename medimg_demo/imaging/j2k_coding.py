"""The coding style of a JPEG 2000 (or HTJ2K) codestream, checked before it is decoded.

OpenJPEG builds its per-code-block state from the COD and COC marker segments (ISO/IEC 15444-1 A.6.1, A.6.2) before
it reads any coded data, and a few header bytes decide how many code-blocks there are: a code-block is at most
2^(xcb+2) pixels wide and, at every resolution but the lowest, at most half its precinct. A forged COD with 2x2
precincts turned an 8000x8000 frame of 1.2 KB into over 20 GB of decoder state (killed); 4x4 code-blocks cost
1.96 GB against 585 MB for the same frame encoded normally. Encoders use 32 or 64 pixel code-blocks and precincts of
128 pixels or no partition at all; 8-pixel code-blocks cost 1.2x (694 MB). So every COD and COC, in the main header
and in each tile-part header (where they override it), must give code-blocks of at least MIN_CODE_BLOCK pixels a side
at every resolution.
"""

from __future__ import annotations

import struct

from .frame_errors import damaged, unsupported

#: Smallest code-block side (pixels) the decoder may be asked to build, at any resolution.
MIN_CODE_BLOCK = 8
#: Most tile-parts walked in one frame (real encoders write one to a few dozen a tile; MAX_J2K_TILES tiles).
MAX_TILE_PARTS = 65536

_SOT, _SOD, _COD, _COC = 0x90, 0x93, 0x52, 0x53
_NO_PRECINCTS = 0xFF  # Scod bit 0 unset: PPx = PPy = 15 at every resolution


def _refuse_small_blocks(spc: bytes, scod: int) -> None:
    """Check SPcod / SPcoc (levels, xcb, ycb, style, transform, [precincts]) of one coding-style segment."""
    if len(spc) < 5:
        raise damaged("a JPEG 2000 coding style segment is truncated")
    levels, xcb, ycb = spc[0], spc[1], spc[2]
    precincts = spc[5 : 5 + levels + 1] if scod & 1 else bytes([_NO_PRECINCTS] * (levels + 1))
    if len(precincts) != levels + 1:
        raise damaged("a JPEG 2000 coding style segment is truncated")
    for r, pp in enumerate(precincts):
        halve = 1 if r else 0  # a subband at resolution r > 0 is half its resolution's size
        wide = min(xcb + 2, (pp & 0x0F) - halve)
        high = min(ycb + 2, (pp >> 4) - halve)
        if min(wide, high) < 0 or (1 << min(wide, high)) < MIN_CODE_BLOCK:
            raise unsupported(f"JPEG 2000 code-blocks or precincts smaller than {MIN_CODE_BLOCK} pixels")


def _walk(data: bytes, off: int, until: int, components: int, *, strict: bool) -> int:
    """Walk marker segments from ``off`` to the marker ``until`` and check each COD and COC; returns its offset.
    ``strict``: a header that runs off the data is damaged (the main header); else the walk just ends (a tile-part
    the decoder cannot read either)."""
    while off + 4 <= len(data):
        if data[off] != 0xFF:
            break
        marker = data[off + 1]
        if marker == until:
            return off
        (length,) = struct.unpack_from(">H", data, off + 2)
        seg = data[off + 4 : off + 2 + length]
        if length < 2 or len(seg) != length - 2:
            break
        if marker == _COD:
            _refuse_small_blocks(seg[5:], seg[0] if seg else 0)
        elif marker == _COC:
            c = 2 if components > 256 else 1  # Ccoc is two bytes when Csiz > 256
            if len(seg) < c + 1:
                raise damaged("a JPEG 2000 coding style segment is truncated")
            _refuse_small_blocks(seg[c + 1 :], seg[c])
        off += 2 + length
    if strict:
        raise damaged("the JPEG 2000 main header is truncated or malformed")
    return len(data)


def check_coding_styles(data: bytes, start: int, components: int) -> None:
    """Refuse a codestream starting at ``start`` (its SOC marker) whose COD or COC segments, in the main header or
    any tile-part header, would make the decoder build code-blocks smaller than MIN_CODE_BLOCK pixels."""
    off = _walk(data, start + 2, _SOT, components, strict=True)
    parts = 0
    while off + 12 <= len(data) and data[off : off + 2] == b"\xff\x90":
        lsot, _tile, psot = struct.unpack_from(">HHI", data, off + 2)
        if lsot != 10:
            raise damaged("a JPEG 2000 tile-part header is malformed")
        _walk(data, off + 12, _SOD, components, strict=False)
        parts += 1
        if parts > MAX_TILE_PARTS:
            raise unsupported(f"more than {MAX_TILE_PARTS:,} JPEG 2000 tile-parts a frame")
        if psot == 0:  # the last tile-part runs to the end of the codestream
            return
        if psot < 14:
            raise damaged("a JPEG 2000 tile-part header is malformed")
        off += psot
