"""Files the app writes for display or download, and how uploads are renamed: never by the uploaded name."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from ..imaging.decode import read_bytes
from ..imaging.deid import deidentify
from ..paths import data_root, state_dir, work_dir

log = logging.getLogger(__name__)


def allowed_paths() -> list[str]:
    """Folders the web server may serve files from: the data root (sample cases) and the state folder (error gallery)."""
    return [str(p.resolve()) for p in (data_root(), state_dir()) if p.is_dir()]


def upload_name(path: str | Path, data: bytes) -> str:
    """A neutral name for an upload: a hash of its bytes and a safe extension, never the original name."""
    p = Path(path)
    digest = hashlib.sha256(data).hexdigest()[:16]
    ext = p.suffix.lower() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm") else ""
    return f"scan-{digest}{ext}"


def deidentified_copy(path: str | Path, out_dir: Path) -> Path:
    """Write a de-identified copy of an uploaded DICOM under ``out_dir``, named by a hash (never by the upload)."""
    data = Path(path).read_bytes()
    study = read_bytes(data)
    if study.source_format != "dicom":
        raise InputError("Only DICOM files carry identifiers to remove; PNG and JPEG uploads have none to strip.")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"deidentified-{study.sha256[:16]}.dcm"
    out.write_bytes(deidentify(data))
    return out


_PNG_WRITES = 0


def png_file(rgb: np.ndarray, max_age_s: float = 3600.0) -> str:
    """Write an RGB image as a content-addressed PNG under the work folder and return its path.

    The app hands Gradio file paths rather than arrays: Gradio re-writes a content-hashed cache file for every
    array it is given, so two clinicians receiving the same image at once could download a half-written copy;
    for a path it copies once, atomically. Files older than ``max_age_s`` are pruned now and then.
    """
    global _PNG_WRITES
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="PNG", compress_level=1)
    data = buf.getvalue()
    folder = work_dir() / "images"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:32]}.png"
    try:
        os.utime(path)  # already there: mark it as just handed out, so pruning below does not delete it
    except FileNotFoundError:
        tmp = folder / f".{path.name}.{os.getpid()}.{time.monotonic_ns()}"
        tmp.write_bytes(data)
        os.replace(tmp, path)
    _PNG_WRITES += 1
    if _PNG_WRITES % 50 == 0:
        cutoff = time.time() - max_age_s
        for old in folder.glob("*.png"):
            try:
                if old.stat().st_mtime < cutoff:
                    old.unlink()
            except OSError:
                log.debug("An old output image was already removed")
    return str(path)
