"""Pixel spacing that a data set knows for its own images: a PNG/JPEG copy carries none, but the brain manifest
states 0.98 mm per pixel for its figshare images (``pixel_spacing_mm``). An image is recognised as the manifests key
it, by the SHA-256 of its decoded 8-bit pixels, so a sample case, a reading-session case or the same file uploaded
is measured in millimetres; a resized or edited copy is not recognised and stays "not measurable"."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from functools import lru_cache

import numpy as np
import pandas as pd

from ..paths import data_root
from .study import Study

log = logging.getLogger(__name__)

#: How the source of a spacing found here is named beside it (info line, JSON).
SOURCE = "data set manifest"


def spacing_origin(spacing_mm: object, source: str) -> str | None:
    """Where a spacing came from, as the JSON and batch rows name it: ``file``, :data:`SOURCE`, or None without one."""
    return (source or "file") if spacing_mm else None


def pixel_key(pixels: np.ndarray) -> str:
    """The manifests' ``sha256``: first 16 hex digits of the SHA-256 of the 8-bit grey pixels."""
    grey = np.clip(np.rint(np.asarray(pixels, dtype=np.float32) * 255), 0, 255).astype(np.uint8)
    return hashlib.sha256(np.ascontiguousarray(grey).tobytes()).hexdigest()[:16]


@lru_cache(maxsize=1)
def _index() -> dict[str, float]:
    """sha256 -> mm per pixel, from every data set manifest with a ``pixel_spacing_mm`` column (read once)."""
    out: dict[str, float] = {}
    root = data_root()
    for manifest in sorted(root.glob("*/manifest.csv")) if root.is_dir() else []:
        head = pd.read_csv(manifest, nrows=0).columns
        if "pixel_spacing_mm" not in head or "sha256" not in head:
            continue
        rows = pd.read_csv(manifest, usecols=["sha256", "pixel_spacing_mm"], dtype={"sha256": str})
        rows = rows[pd.to_numeric(rows["pixel_spacing_mm"], errors="coerce").gt(0)]
        out.update(zip(rows["sha256"], rows["pixel_spacing_mm"].astype(float)))
    log.debug("Known pixel spacing for %d data set images", len(out))
    return out


def with_known_spacing(study: Study) -> Study:
    """``study`` with the spacing its data set states, if it has none of its own and is a data set image."""
    if study.pixel_spacing_mm is not None or study.source_format == "dicom":
        return study
    index = _index()
    if not index:  # no data set here (a hosted Space): no hashing on the request path
        return study
    mm = index.get(pixel_key(study.pixels))
    if mm is None:
        return study
    return replace(study, pixel_spacing_mm=(mm, mm), spacing_source=SOURCE)
