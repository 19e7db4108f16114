"""The coding style of a JPEG 2000 (or HTJ2K) codestream, checked before it is decoded.

OpenJPEG builds its per-code-block state from the COD and COC marker segments (ISO/IEC 15444-1 A.6.1, A.6.2) before
it reads any coded data, and a few header bytes decide how many code-blocks there are: a code-block is at most
2^(xcb+2) pixels wide and, at every resolution but the lowest, at most half its precinct. A forged COD with 2x2
precincts turned an 8000x8000 frame of 1.2 KB into over 20 GB of decoder state (killed); 4x4 code-blocks cost
1.96 GB against 585 MB for the same frame encoded normally. Encoders use 32 or 64 pixel code-blocks and precincts of
128 pixels or no partition at all; 8x8 code-blocks cost 1.2x (694 MB). So every COD and COC, in the main header and
in each tile-part header (where they override it), must give code-blocks of at least MIN_CODE_BLOCK_AREA pixels at
every resolution.
"""

from __future__ import annotations

import struct

from .frame_errors import damaged, unsupported

#: Smallest code-block the decoder may be asked to build, in pixels (width x height), at any resolution.
MIN_CODE_BLOCK_AREA = 64
#: Quality layers a COD may state: each is a pass of packet headers over every code-block (600 layers of an
#: 8000x8000 frame of 752 bytes held the decoder, and every other request, for 9 s; encoders use one to a few dozen).
MAX_LAYERS = 64
#: Most tile-parts walked in one frame (real encoders write one to a few dozen a tile; MAX_J2K_TILES tiles).
MAX_TILE_PARTS = 65536
#: Most marker segments walked in one frame, all headers together (real files hold tens a header).
MAX_SEGMENTS = 100_000

_SOT, _SOD, _COD, _COC = 0x90, 0x93, 0x52, 0x53
_NO_PRECINCTS = 0xFF  # Scod bit 0 unset: PPx = PPy = 15 at every resolution
# The segments OpenJPEG reads in each header. It skips an unknown marker by scanning for the next one it knows, not
# by its length, so a COD behind an unknown marker would be read by the decoder and missed by a walk by lengths:
# any other marker is refused. Main header: CAP SIZ COD COC TLM PLM CPF QCD QCC RGN POC PPM CRG COM MCT MCC MCO CBD.
_MAIN = {0x50, 0x51, 0x52, 0x53, 0x55, 0x57, 0x59, 0x5C, 0x5D, 0x5E, 0x5F, 0x60, 0x63, 0x64, 0x74, 0x75, 0x77, 0x78}
# Tile-part header: COD COC PLT QCD QCC RGN POC PPT COM MCT MCC MCO.
_TILE = {0x52, 0x53, 0x58, 0x5C, 0x5D, 0x5E, 0x5F, 0x61, 0x64, 0x74, 0x75, 0x77}


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
        wide = min(xcb + 2, (pp & 0x0F) - halve)  # exponents of the code-block the decoder builds
        high = min(ycb + 2, (pp >> 4) - halve)
        if min(wide, high) < 0 or 1 << (wide + high) < MIN_CODE_BLOCK_AREA:  # count follows the area (1024x4 is legal)
            raise unsupported(f"JPEG 2000 code-blocks or precincts under {MIN_CODE_BLOCK_AREA} pixels")


class _Walk:
    """The marker segments of one codestream, walked header by header, with one budget of segments for all."""

    def __init__(self, data: bytes, components: int) -> None:
        self.data, self.components, self.segments = data, components, 0

    def header(self, off: int, end: int, until: int, allowed: set[int], *, partial_ok: bool) -> int:
        """Walk the segments in ``data[off:end]`` up to the marker ``until``, checking each COD and COC; returns its
        offset. A segment that runs past ``end`` is damaged, unless ``partial_ok`` and ``end`` is the end of the
        data (a truncated last tile-part: the walk just ends there, as the decoder's reading does)."""
        data = self.data
        while off + 2 <= end:
            marker = data[off + 1]
            if data[off] != 0xFF or (marker != until and marker not in allowed):
                raise unsupported("a JPEG 2000 marker this server does not read in that header")
            if marker == until:
                return off
            if off + 4 > end:
                break
            self.segments += 1
            if self.segments > MAX_SEGMENTS:
                raise unsupported(f"more than {MAX_SEGMENTS:,} JPEG 2000 marker segments")
            (length,) = struct.unpack_from(">H", data, off + 2)
            if length < 2 or off + 2 + length > end:
                break
            seg = data[off + 4 : off + 2 + length]
            if marker == _COD:
                if len(seg) >= 4 and struct.unpack_from(">H", seg, 2)[0] > MAX_LAYERS:
                    raise unsupported(f"more than {MAX_LAYERS} JPEG 2000 quality layers")
                _refuse_small_blocks(seg[5:], seg[0] if seg else 0)
            elif marker == _COC:
                c = 2 if self.components > 256 else 1  # Ccoc is two bytes when Csiz > 256
                if len(seg) < c + 1:
                    raise damaged("a JPEG 2000 coding style segment is truncated")
                _refuse_small_blocks(seg[c + 1 :], seg[c])
            off += 2 + length
        if partial_ok and end == len(data):
            return end
        raise damaged("a JPEG 2000 header is truncated or malformed")


def check_coding_styles(data: bytes, start: int, components: int) -> None:
    """Refuse a codestream starting at ``start`` (its SOC marker) whose COD or COC segments, in the main header or
    any tile-part header, would make the decoder build code-blocks under MIN_CODE_BLOCK_AREA pixels, or whose
    headers hold a marker the decoder would find by scanning rather than by length. Each tile-part header is walked
    only within its own length (Psot), so the work is linear in the data."""
    walk = _Walk(data, components)
    off = walk.header(start + 2, len(data), _SOT, _MAIN, partial_ok=False)
    parts = 0
    while off + 12 <= len(data) and data[off : off + 2] == b"\xff\x90":
        lsot, _tile, psot = struct.unpack_from(">HHI", data, off + 2)
        if lsot != 10 or (psot and psot < 14):
            raise damaged("a JPEG 2000 tile-part header is malformed")
        parts += 1
        if parts > MAX_TILE_PARTS:
            raise unsupported(f"more than {MAX_TILE_PARTS:,} JPEG 2000 tile-parts a frame")
        end = min(off + psot, len(data)) if psot else len(data)  # Psot 0: the last tile-part, to the end
        walk.header(off + 12, end, _SOD, _TILE, partial_ok=True)
        if not psot:
            return
        off += psot
