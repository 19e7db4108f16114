"""Decode an uploaded file (PNG/JPEG or DICOM) into a :class:`Study`; the format is sniffed from the content."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from .dicom import looks_like_dicom, read_dicom
from .raster import read_raster
from .study import ACCEPTED, Study

#: Largest upload in bytes (the deployer may lower it with MEDIMG_MAX_UPLOAD_MB).
MAX_BYTES = int(float(os.environ.get("MEDIMG_MAX_UPLOAD_MB", "200")) * 1024 * 1024)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


def read_bytes(data: bytes, frame: int | None = None) -> Study:
    """Decode raw file bytes; the format is sniffed from the content, never from a file name.

    ``frame``: 0-based frame of a multi-frame DICOM (default: the middle frame).
    """
    if not data:
        raise InputError(f"The file is empty. Accepted: {ACCEPTED}.")
    if len(data) > MAX_BYTES:
        raise InputError(
            f"The file is {len(data) / 1e6:.0f} MB, over the limit of {MAX_BYTES / 1e6:.0f} MB set for this server."
        )
    if data.startswith(_PNG_MAGIC):
        return read_raster(data, "png")
    if data.startswith(_JPEG_MAGIC):
        return read_raster(data, "jpeg")
    if looks_like_dicom(data):
        return read_dicom(data, frame)
    raise InputError(f"This file is not a recognised image. Accepted: {ACCEPTED}.")


def read_file(path: str | os.PathLike[str], frame: int | None = None) -> Study:
    """Decode a file on disk. Its name is never copied into the Study, logs or errors."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise InputError("The file could not be opened; upload it again.") from exc
    if size > MAX_BYTES:
        raise InputError(f"The file is {size / 1e6:.0f} MB, over the limit of {MAX_BYTES / 1e6:.0f} MB set for this server.")
    return read_bytes(p.read_bytes(), frame)
