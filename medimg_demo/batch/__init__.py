"""Batch: score an archive of PNG/JPEG/DICOM files on Ray Data (in-process by default) into one Parquet table."""

from __future__ import annotations
