"""How much work a JPEG or JPEG-LS image asks of its decoder, read from its marker segments before it is decoded.

Each scan of a progressive JPEG is a pass over the whole image, and a repeated scan of a flat image costs a few bytes:
2,000 of them in a 165 KB file kept the decoder busy for 53 s (a 4096x4096 DICOM frame; 20 s as a plain JPEG). So
the scans are counted, by walking the segments as a decoder does: an APPn or COM payload (an EXIF thumbnail holds a
whole JPEG) is skipped by its length, entropy-coded data up to the next marker, and nothing after EOI is read (a
motion photo carries a video there). The walk is bounded too: at most MAX_SEGMENTS segments.
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from ..errors import InputError

#: Scans one image may hold. Encoders write one scan a component, or six to ten for a progressive image (libjpeg's
#: simple progression).
MAX_SCANS = 64
#: Marker segments walked in one image (real files hold tens; restart markers are not segments).
MAX_SEGMENTS = 10_000

# The next marker in entropy-coded data: 0xFF then a code byte. Not a marker: 0xFF00 (JPEG's stuffing), 0xFF with a
# byte under 0x80 (JPEG-LS's stuffed bit), RSTn (0xD0-0xD7, inside a scan) and fill bytes (0xFF 0xFF).
_NEXT_MARKER = re.compile(rb"\xff[\x80-\xcf\xd8-\xfe]")
_NO_LENGTH = {0x01, *range(0xD0, 0xD8)}  # TEM, RSTn
#: A run of fill bytes before a marker (0xFF 0xFF ... 0xFF xx), skipped in one step: 100 MB of them walked byte by
#: byte took 11 s.
_FILL = re.compile(rb"\xff\xff+")


@contextmanager
def _buffer(src: bytes | bytearray | BinaryIO) -> Iterator[bytes | mmap.mmap]:
    """Bytes as they are; a file mapped read-only (not read into memory), or an in-memory file's contents."""
    if isinstance(src, (bytes, bytearray)):
        yield bytes(src) if isinstance(src, bytearray) else src
        return
    try:
        mapped = mmap.mmap(src.fileno(), 0, access=mmap.ACCESS_READ)
    except (AttributeError, OSError, ValueError):  # no file descriptor (BytesIO), or an empty file
        start = src.tell()
        src.seek(0)
        data = src.read()
        src.seek(start)
        yield data
        return
    try:
        yield mapped
    finally:
        mapped.close()


def _refusal(buf: bytes | mmap.mmap) -> str | None:
    n = len(buf)
    if buf[:2] != b"\xff\xd8":
        return None  # not a JPEG stream: the decoder refuses it itself
    pos, scans, segments = 2, 0, 0
    while pos + 4 <= n:
        if buf[pos] != 0xFF or buf[pos + 1] < 0x80:  # stray bytes between segments: decoders look for the next marker
            found = _NEXT_MARKER.search(buf, pos)
            if found is None:
                break
            pos = found.start()
            continue
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill bytes: to the last of them
            pos = _FILL.match(buf, pos).end() - 1  # type: ignore[union-attr] - two 0xFF bytes are at pos
            continue
        if marker == 0xD9:  # EOI: nothing after it is the image
            break
        segments += 1
        if segments > MAX_SEGMENTS:
            return f"more than {MAX_SEGMENTS:,} marker segments"
        if marker in _NO_LENGTH:
            pos += 2
            continue
        pos += 2 + (buf[pos + 2] << 8 | buf[pos + 3])
        if marker == 0xDA:
            scans += 1
            if scans > MAX_SCANS:
                return f"more than {MAX_SCANS} scans (progressive passes)"
            found = _NEXT_MARKER.search(buf, pos)  # past the entropy-coded data
            if found is None:
                break
            pos = found.start()
    return None


def refused(why: str) -> InputError:
    """The refusal of a PNG/JPEG upload whose JPEG asks too much (``why``: what :func:`refusal` returned)."""
    return InputError(f"The JPEG holds {why}, more than this server decodes. Save it again as a baseline JPEG or a PNG "
                      "and upload it again.")


def refusal(src: bytes | bytearray | BinaryIO) -> str | None:
    """Why the JPEG or JPEG-LS image in ``src`` (bytes, or a file, whose position is left as it was) asks too much of
    its decoder ("more than 64 scans (progressive passes)"), or None."""
    with _buffer(src) as buf:
        return _refusal(buf)
