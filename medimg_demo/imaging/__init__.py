"""Imaging: decode PNG/JPEG/DICOM into a Study, display windows, DICOM de-identification.

The only part of the package that imports pydicom; raw bytes and identifiers never leave it.
"""

from __future__ import annotations

from .decode import read_bytes, read_file
from .dicom import BURNED_IN_WARNING
from .study import ACCEPTED, Study
from .windowing import CT_PRESETS, apply_window

__all__ = ["ACCEPTED", "BURNED_IN_WARNING", "CT_PRESETS", "Study", "apply_window", "read_bytes", "read_file"]
