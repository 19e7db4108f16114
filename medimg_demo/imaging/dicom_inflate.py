"""A Deflated Explicit VR Little Endian body inflated in bounded steps (pydicom inflates it all at once): the
DICOM structure guard (:mod:`.dicom_guard`) measures it before anything else reads it."""

from __future__ import annotations

import io
import logging
import zlib
from typing import BinaryIO

from .. import settings
from ..errors import InputError

log = logging.getLogger(__name__)

#: Largest size a Deflated Explicit VR Little Endian body may inflate to (MEDIMG_MAX_INFLATED_MB, default 64).
MAX_INFLATED_BYTES = int(settings.number("MEDIMG_MAX_INFLATED_MB", 64, "megabytes a Deflated DICOM may inflate to",
                                         low=1) * 1024 * 1024)
_CHUNK = 1 << 20


def inflate_bounded(fp: BinaryIO, start: int, keep: bool) -> io.BytesIO | None:
    """Inflate a deflated body from ``start`` in bounded steps, refusing it past :data:`MAX_INFLATED_BYTES`. With
    ``keep`` the inflated bytes are returned; None: the stream is damaged or unfinished (pydicom fails on it before
    reading any element)."""
    fp.seek(start)
    inflater, out, total = zlib.decompressobj(-zlib.MAX_WBITS), io.BytesIO(), 0
    try:
        while not inflater.eof:
            data = inflater.unconsumed_tail or fp.read(_CHUNK)
            piece = inflater.decompress(data, _CHUNK) if data else inflater.flush()
            total += len(piece)
            if total > MAX_INFLATED_BYTES:
                log.info("DICOM refused: deflated body inflates past %d bytes", MAX_INFLATED_BYTES)
                raise InputError(
                    "This DICOM file is compressed as a whole (Deflated transfer syntax) and expands to more than "
                    f"{MAX_INFLATED_BYTES / 2**20:.0f} MB, over this server's limit (MEDIMG_MAX_INFLATED_MB). "
                    "Export it as Explicit VR Little Endian (or with compressed pixel data) and upload it again.")
            if keep:
                out.write(piece)
            if not data:
                break
    except zlib.error:
        return None
    return out if inflater.eof else None


def declared_syntax(fp: BinaryIO, fallback: str | None) -> object:
    """The transfer syntax pydicom's reader acts on: its own reading of the file meta (a value written as bytes, or
    padded past what a header walk reads, is read as pydicom reads it; pydicom compares it with the UIDs by ``==``).
    ``fallback`` where pydicom cannot read the file meta."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    try:
        fp.seek(0)
        read_preamble(fp, force=True)
        value = _read_file_meta_info(fp).get("TransferSyntaxUID")
    except Exception:  # noqa: BLE001 - any failure: pydicom's own read fails or guesses alike
        return fallback
    return value if value is None or isinstance(value, str) else "?"  # bytes, several values: equal to no UID
