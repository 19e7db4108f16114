"""Cleaning an upload before anything keeps it: a de-identified DICOM, or a PNG/JPEG without its text and metadata
(pixels unchanged); anything else refused. Pure functions of the bytes: the server runs them in a child of the decode
server (``isolated.clean_isolated``), as hostile files parse there, under its memory and time limits."""

from __future__ import annotations

import re
import struct

from ..errors import InputError
from . import jpeg_markers
from .deid import deidentify
from .dicom import looks_like_dicom

ACCEPTED = "PNG, JPEG or DICOM"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: PNG chunks that carry the image; text (tEXt/zTXt/iTXt), EXIF, time, ICC profile name and the rest are dropped.
_PNG_KEEP = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"pHYs", b"bKGD"}


def strip_png(data: bytes) -> bytes:
    """The PNG with only the chunks that make its pixels (lossless; nothing after IEND)."""
    out, pos = [_PNG_MAGIC], len(_PNG_MAGIC)
    while pos + 12 <= len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > len(data):
            break
        if kind in _PNG_KEEP:
            out.append(data[pos:end])
        pos = end
        if kind == b"IEND":
            return b"".join(out)
    raise InputError(f"This PNG file is truncated or damaged (no IEND chunk); export it again. Accepted: {ACCEPTED}.")


#: The end of entropy-coded data: 0xFF and a byte other than 0x00 (stuffing) or 0xD0-0xD7 (restart markers).
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")
_FILL = re.compile(rb"\xff\xff+")


def strip_jpeg(data: bytes) -> bytes:
    """The JPEG without its metadata segments (EXIF/XMP APP1, APP2-APP13, APP15, comments) and without anything
    after the end-of-image marker; JFIF (APP0) and Adobe (APP14, colour transform) stay. Lossless: the coded
    image data are copied byte for byte. The walk is bounded first (``jpeg_markers``: at most 10,000 segments and 64
    scans), and entropy-coded data and fill bytes are skipped by regular expression, not byte by byte in Python (a
    94 MB scan of stuffed bytes held the server for 16 s)."""
    if (why := jpeg_markers.refusal(data)) is not None:
        raise jpeg_markers.refused(why)
    out, pos, n = [b"\xff\xd8"], 2, len(data)
    while pos < n:
        if data[pos] != 0xFF:
            raise InputError(f"This JPEG file is damaged (bad marker); export it again. Accepted: {ACCEPTED}.")
        marker = data[pos + 1] if pos + 1 < n else 0xD9
        if marker == 0xFF:  # fill bytes
            pos = _FILL.match(data, pos).end() - 1  # type: ignore[union-attr] - two 0xFF bytes are at pos
            continue
        if marker == 0xD9:
            out.append(b"\xff\xd9")
            return b"".join(out)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            out.append(data[pos:pos + 2])
            pos += 2
            continue
        if pos + 4 > n:
            break
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        end = pos + 2 + length
        if length < 2 or end > n:
            break
        drop = (0xE1 <= marker <= 0xED) or marker in (0xEF, 0xFE)
        if not drop:
            out.append(data[pos:end])
        pos = end
        if marker == 0xDA:  # start of scan: copy the entropy-coded data up to the next real marker
            found = _SCAN_END.search(data, pos)
            stop = found.start() if found else max(pos, n - 1)
            out.append(data[pos:stop])
            pos = stop
    raise InputError(f"This JPEG file is truncated (no end-of-image marker); export it again. Accepted: {ACCEPTED}.")


def clean_in_process(data: bytes) -> tuple[bytes, str]:
    """(cleaned bytes, extension) of an upload, sniffed from its content: a de-identified DICOM, or a PNG/JPEG
    with its metadata dropped. Anything else (HTML, SVG, scripts, archives ...) is refused here, before it is kept."""
    if data.startswith(_PNG_MAGIC):
        return strip_png(data), ".png"
    if data.startswith(b"\xff\xd8\xff"):
        return strip_jpeg(data), ".jpg"
    if looks_like_dicom(data):
        return deidentify(data), ".dcm"
    if not data:
        raise InputError(f"The file is empty. Accepted: {ACCEPTED} (.dcm or no extension).")
    raise InputError(f"This file is not a recognised image. Accepted: {ACCEPTED} (.dcm or no extension).")
