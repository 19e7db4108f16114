"""Bounds on one DICOM frame's decode, checked before any pixel is decoded.

The pixel limit (MAX_PIXELS) is checked against the DICOM header's Rows x Columns, but the decoders size their
buffers by other numbers: a JPEG 2000, JPEG or JPEG-LS decoder allocates by the codestream's *own* frame header (a
670-byte file whose header says 512x512 can state 40000x40000 inside: gigabytes), pydicom's RLE decoder expands
each segment without a bound and compares lengths only afterwards, and the output buffer grows with the samples a
pixel and the bytes a sample, which a pixel count does not see. :func:`check_frame` reads what the decoder will
read (pydicom's own header read and frame lookup) and refuses, before decoding:

* a frame whose decoded size (Rows x Columns x Samples per Pixel x bytes a sample) exceeds MAX_DECODED_BYTES;
* JPEG 2000 / HTJ2K: a SIZ marker whose width, height or component count differs from the header, whose precision
  exceeds Bits Allocated, with more than MAX_J2K_TILES tiles, or a JP2 wrapper with a palette box; code-blocks or
  precincts so small that the decoder's state outgrows the image (``j2k_coding``);
* JPEG / JPEG-LS: a frame header (SOF) that disagrees likewise, a height left to a later DNL marker, hierarchical
  JPEG, JPEG-LS oversize dimensions (LSE id 4), JPEG extension markers, or more scans or segments than
  :mod:`.jpeg_markers` allows;
* RLE: a segment that expands to more than twice a sample plane.

Messages say what is wrong and what to do; none quotes a value read from the file.
"""

from __future__ import annotations

import logging
import re
import struct
from dataclasses import dataclass
from typing import BinaryIO

from .. import settings
from ..errors import InputError
from .frame_errors import damaged as _damaged
from .frame_errors import unsupported as _unsupported
from . import jpeg_markers
from .j2k_coding import check_coding_styles
from .study import MAX_PIXELS

log = logging.getLogger(__name__)

#: Largest decoded frame in bytes (Rows x Columns x Samples per Pixel x bytes a sample, before any reduction).
#: Default: MAX_PIXELS pixels of 3 samples at 2 bytes (384 MB with the default pixel limit).
MAX_DECODED_BYTES = settings.whole("MEDIMG_MAX_DECODED_BYTES", MAX_PIXELS * 3 * 2, "bytes one decoded frame may take",
                                  low=1)
#: OpenJPEG allocates about 10 KB of coding state a tile while it reads the main header (29,000 tiles of a 512x512
#: image: 275 MB); real encoders use one tile or tiles of 128 px and more.
MAX_J2K_TILES = 4096
#: An RLE segment (one byte of one sample) may carry padding past its plane; more than this many times the plane is
#: no padding but an expansion bomb (a 2-byte run expands to 128 bytes).
_RLE_SLACK = 2

_SOF = {*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0), 0xF7}  # JPEG; F7: JPEG-LS


@dataclass(frozen=True)
class FrameHeader:
    """What a codestream's own header says about the image it decodes to."""

    width: int
    height: int
    components: int
    precision: int  # bits a sample (the largest over the components)
    tiles: int = 1


def check_decoded_bytes(rows: int, cols: int, samples: int, bits_allocated: int) -> None:
    """Refuse a frame whose decoded buffer would exceed MAX_DECODED_BYTES."""
    need = rows * cols * max(samples, 1) * max(-(-bits_allocated // 8), 1)
    if need > MAX_DECODED_BYTES:
        limit = f"{MAX_DECODED_BYTES / 1e6:,.0f} MB"
        raise InputError(
            f"The DICOM image needs more memory to decode one frame than this server allows ({limit}, "
            "MEDIMG_MAX_DECODED_BYTES): too many pixels, colour samples or bits a sample. Upload a smaller, "
            "grayscale or 8-bit export."
        )


def _jp2_codestream_offset(data: bytes) -> int:
    """Offset of the codestream in a JP2 file (DICOM forbids the wrapper, decoders accept it); 0 for a bare one."""
    if not data.startswith(b"\x00\x00\x00\x0cjP  "):
        return 0
    off = 0
    while off + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, off)
        head = 8
        if length == 1 and off + 16 <= len(data):
            length, head = struct.unpack_from(">Q", data, off + 8)[0], 16
        elif length == 0:
            length = len(data) - off
        if length < head:
            break
        if kind == b"jp2h" and b"pclr" in data[off + head : off + length]:
            raise _unsupported("a JPEG 2000 colour palette")  # the decoder expands it to up to 1024 channels
        if kind == b"jp2c":
            return off + head
        off += length
    raise _damaged("the JPEG 2000 file has no codestream")


def j2k_header(data: bytes) -> FrameHeader:
    """The SIZ marker of a JPEG 2000 (or HTJ2K) codestream, read without decoding (ISO/IEC 15444-1 A.5.1).

    Parsed here rather than with ``openjpeg.get_parameters``: that one builds the decoder's per-tile state from the
    same forged numbers; pydicom's ``get_j2k_parameters`` returns the precision only."""
    o = _jp2_codestream_offset(data)
    if data[o : o + 4] != b"\xff\x4f\xff\x51":
        raise _damaged("the frame does not start with a JPEG 2000 image header")
    if len(data) < o + 44:
        raise _damaged("the JPEG 2000 image header is truncated or malformed")
    (lsiz,) = struct.unpack_from(">H", data, o + 4)
    xsiz, ysiz, xo, yo, xt, yt, xto, yto = struct.unpack_from(">8I", data, o + 8)
    (csiz,) = struct.unpack_from(">H", data, o + 40)
    comps = data[o + 42 : o + 42 + 3 * csiz]
    if lsiz != 38 + 3 * csiz or len(comps) != 3 * csiz or csiz == 0:
        raise _damaged("the JPEG 2000 image header is truncated or malformed")
    if not (xo < xsiz and yo < ysiz and xt and yt and xto <= xo and yto <= yo and xto + xt > xo and yto + yt > yo):
        raise _damaged("the JPEG 2000 image header states an impossible image or tile grid")
    if any(comps[i + 1] == 0 or comps[i + 2] == 0 for i in range(0, len(comps), 3)):
        raise _damaged("the JPEG 2000 image header states an impossible subsampling")
    precision = max((comps[i] & 0x7F) + 1 for i in range(0, len(comps), 3))
    tiles = -(-(xsiz - xto) // xt) * -(-(ysiz - yto) // yt)
    return FrameHeader(xsiz - xo, ysiz - yo, csiz, precision, tiles)


def jpeg_header(data: bytes) -> FrameHeader:
    """The frame header (SOF) of a JPEG or JPEG-LS codestream, read by walking its marker segments up to the first
    scan (ISO/IEC 10918-1 B.2, 14495-1 C.2). Refuses what could resize the frame later or elsewhere."""
    if data[:2] != b"\xff\xd8":
        raise _damaged("the frame does not start with a JPEG image header")
    off, sof = 2, None
    while True:
        if off + 4 > len(data) or data[off] != 0xFF:
            raise _damaged("the JPEG image header is truncated or malformed")
        marker = data[off + 1]
        if marker == 0xFF:  # fill byte
            off += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length
            off += 2
            continue
        if marker in (0xD8, 0xD9):
            raise _damaged("the JPEG image ends before its first scan")
        (length,) = struct.unpack_from(">H", data, off + 2)
        seg = data[off + 4 : off + 2 + length]
        if length < 2 or len(seg) != length - 2:
            raise _damaged("the JPEG image header is truncated or malformed")
        if marker == 0xDE:
            raise _unsupported("hierarchical JPEG")
        if marker == 0xF8 and seg[:1] == b"\x04":
            raise _unsupported("JPEG-LS oversize image dimensions")
        if 0xF0 <= marker <= 0xFD and marker not in (0xF7, 0xF8):
            raise _unsupported("a JPEG extension")
        if marker in _SOF:
            if sof is not None:
                raise _damaged("the JPEG image has two frame headers")
            if len(seg) < 6 or len(seg) < 6 + 3 * seg[5]:
                raise _damaged("the JPEG frame header is truncated")
            precision, height, width, components = struct.unpack_from(">BHHB", seg)
            if height == 0 or width == 0:  # height 0: defined by a DNL marker after the first scan
                raise _unsupported("a JPEG frame whose size is given only after its first scan")
            sof = FrameHeader(width, height, components, precision)
        if marker == 0xDA:
            if sof is None:
                raise _damaged("the JPEG image has no frame header")
            return sof
        off += 2 + length


_RLE_NOOPS = re.compile(rb"\x80+")


def _rle_segment_length(seg: bytes, limit: int) -> int:
    """Bytes one RLE segment decodes to (PS3.5 G.3.2), counted without decoding; stops once over ``limit``."""
    n = pos = 0
    end = len(seg)
    while pos < end:
        h = seg[pos]
        if h < 128:
            n += h + 1
            pos += h + 2
        elif h > 128:
            n += 257 - h
            pos += 2
        else:  # 0x80 is a no-op: a run of them is skipped in one step (68 MB of them took 5.6 s byte by byte)
            pos = _RLE_NOOPS.match(seg, pos).end()  # type: ignore[union-attr] - seg[pos] is 0x80
        if n > limit:
            break
    return n


def check_rle(frame: bytes, rows: int, cols: int) -> None:
    """Refuse an RLE frame any of whose segments expands to more than _RLE_SLACK sample planes."""
    if len(frame) < 64:
        raise _damaged("the RLE frame has no header")
    count = struct.unpack_from("<I", frame)[0]
    offsets = list(struct.unpack_from("<15I", frame, 4)[: min(count, 15)]) + [len(frame)]
    limit = _RLE_SLACK * rows * cols + 1024
    for start, stop in zip(offsets, offsets[1:]):  # a longer segment (0x80 no-ops, counted byte by byte) is no image
        if stop - start > limit or _rle_segment_length(frame[start:stop], limit) > limit:
            raise _damaged("its RLE data expands to far more than the image size in its header")


def check_header(info: FrameHeader, rows: int, cols: int, samples: int, bits_allocated: int) -> None:
    """Refuse a codestream header that disagrees with the DICOM header's image size, samples or bit depth."""
    if (info.width, info.height) != (cols, rows):
        raise _damaged("the compressed image's width or height differs from the header's Rows and Columns")
    if info.components != samples:
        raise _damaged("the compressed image's colour components differ from the header's Samples per Pixel")
    if info.precision > bits_allocated:
        raise _damaged("the compressed image has more bits a sample than the header's Bits Allocated")
    if info.tiles > MAX_J2K_TILES:
        raise _unsupported(f"more than {MAX_J2K_TILES:,} JPEG 2000 tiles a frame")


def check_frame(fp: BinaryIO, index: int, syntax: str | None) -> None:
    """Check frame ``index`` of the DICOM in ``fp`` before pydicom's ``pixel_array(fp, index=...)`` decodes it.

    Reads the header and the one compressed frame exactly as ``pixel_array`` does (its own header read, its frame
    lookup), so the numbers checked are the numbers the decoder uses. ``fp`` is left where it was."""
    if not syntax:
        return  # pixel_array refuses a data set without a transfer syntax itself
    from pydicom.encaps import get_frame
    from pydicom.pixels.utils import _DEFAULT_TAGS, _array_common
    from pydicom.uid import UID, JPEG2000TransferSyntaxes, JPEGLSTransferSyntaxes, JPEGTransferSyntaxes, RLELossless

    start = fp.tell()
    try:
        fp.seek(0)
        _, opts = _array_common(fp, list(_DEFAULT_TAGS), transfer_syntax_uid=syntax)
        rows, cols = int(opts.get("rows") or 0), int(opts.get("columns") or 0)
        samples, bits = int(opts.get("samples_per_pixel") or 1), int(opts.get("bits_allocated") or 0)
        if rows <= 0 or cols <= 0 or bits <= 0:
            return  # the decoder's own validation refuses an incomplete header before it allocates
        check_decoded_bytes(rows, cols, samples, bits)
        tsyntax = UID(syntax)
        if not tsyntax.is_encapsulated or opts.get("pixel_keyword") != "PixelData":
            return  # native: pydicom reads the frame's bytes from the file, bounded by its header and the upload
        frame = get_frame(fp, index, number_of_frames=int(opts.get("number_of_frames") or 1),
                          extended_offsets=opts.get("extended_offsets"))
        if tsyntax in JPEG2000TransferSyntaxes:
            check_decoded_bytes(rows, cols, samples, 32)  # OpenJPEG decodes into 32-bit integers a sample
            check_header(j2k_header(frame), rows, cols, samples, bits)
            check_coding_styles(frame, _jp2_codestream_offset(frame), samples)
        elif tsyntax in JPEGTransferSyntaxes or tsyntax in JPEGLSTransferSyntaxes:
            check_header(jpeg_header(frame), rows, cols, samples, bits)
            if (why := jpeg_markers.refusal(frame)) is not None:  # work for the decoder, not memory
                raise _unsupported(f"a JPEG frame with {why}")
        elif tsyntax == RLELossless:
            check_rle(frame, rows, cols)
        else:  # no header parser: bounded by the DICOM header's bytes above
            log.info("No codestream check for this compressed transfer syntax; bounded by the header's size only")
    except InputError as exc:
        log.info("DICOM frame refused before decoding (%s)", str(exc).split(":", 1)[0])
        raise
    finally:
        fp.seek(start)
