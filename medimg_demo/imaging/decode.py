"""Decode an uploaded file (PNG/JPEG or DICOM) into a :class:`Study`; the format is sniffed from the content."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

from .. import settings
from ..errors import InputError
from .dicom import looks_like_dicom, read_dicom
from .known_spacing import with_known_spacing
from .raster import read_raster
from .study import ACCEPTED, Study

#: Largest upload in bytes (the deployer may lower it with MEDIMG_MAX_UPLOAD_MB).
#: 100 MB by default: de-identifying a DICOM upload holds it twice in memory, and an upload may cost at most
#: 300 MB (two at once: 1 GB).
MAX_BYTES = int(settings.number("MEDIMG_MAX_UPLOAD_MB", 100, "megabytes an upload may have", low=0.01) * 1024 * 1024)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


def _read(fp: BinaryIO, frame: int | None) -> Study:
    """Sniff the format from the first bytes and decode from the open file (large files are never read whole)."""
    head = fp.read(132)
    fp.seek(0)
    if not head:
        raise InputError(f"The file is empty. Accepted: {ACCEPTED}.")
    raster = "png" if head.startswith(_PNG_MAGIC) else "jpeg" if head.startswith(_JPEG_MAGIC) else None
    if raster is not None and frame not in (None, 0):
        raise InputError(f"Frame {frame + 1} does not exist (index {frame}, counting from 0); a {raster.upper()} image "
                         "has one frame.")
    if raster is not None:  # a copy of a data set image gets the spacing its manifest states
        return with_known_spacing(read_raster(fp, raster))
    if looks_like_dicom(head):
        return read_dicom(fp, frame)
    raise InputError(f"This file is not a recognised image. Accepted: {ACCEPTED}.")


def too_large(size: int | None = None) -> InputError:
    """The refusal of a file over :data:`MAX_BYTES` (``size`` in bytes where it is known)."""
    what = f"The file is {size / 1e6:.0f} MB, over" if size is not None else "The file is over"
    return InputError(f"{what} the limit of {MAX_BYTES / 1e6:.0f} MB set for this server (MEDIMG_MAX_UPLOAD_MB).")


def read_bytes(data: bytes, frame: int | None = None) -> Study:
    """Decode raw file bytes; the format is sniffed from the content, never from a file name.

    ``frame``: 0-based frame of a multi-frame DICOM (default: the middle frame).
    """
    if not data:
        raise InputError(f"The file is empty. Accepted: {ACCEPTED}.")
    if len(data) > MAX_BYTES:
        raise too_large(len(data))
    return _read(io.BytesIO(data), frame)


def read_file(path: str | os.PathLike[str], frame: int | None = None) -> Study:
    """Decode a file on disk, streaming from it (one DICOM frame, not the whole file, is read into memory).
    Its name is never copied into the Study, logs or errors."""
    p = Path(path)
    try:
        size = p.stat().st_size
        fp = open(p, "rb")  # noqa: SIM115 - closed below, after the decoder is done with it
    except OSError as exc:
        why = {2: "it does not exist", 13: "permission denied", 21: "it is a folder"}.get(exc.errno or 0, "")
        raise InputError(f"The file could not be opened{f' ({why})' if why else ''}; check it and give or upload it "
                         "again.") from exc
    with fp:
        if size > MAX_BYTES:
            raise too_large(size)
        return _read(fp, frame)
