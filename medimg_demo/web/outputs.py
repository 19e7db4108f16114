"""Files the web app makes to serve, all in the public folder (``paths.public_dir()``): rendered PNGs, error-gallery
images, case reports, feedback exports and de-identified DICOM copies; written atomically, handed out again while
fresh, and pruned by age and size (:mod:`.files` says what may be served).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import io
import logging
import os
import re
import secrets
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .. import settings
from ..errors import InputError
from ..imaging.dicom import looks_like_dicom
from ..imaging.isolated import deidentify_isolated
from ..paths import public_dir
from .uploads import WORK_BUDGET_BYTES

log = logging.getLogger(__name__)

#: How long generated and uploaded files are kept (web.expiry's reaper, delete_cache, the public folder's pruning).
MAX_AGE_S = settings.number("MEDIMG_FILE_MAX_AGE_S", 3600, "seconds a served file lives", low=1)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def deidentified_copy(source: str | Path | bytes, out_dir: Path | None = None) -> tuple[Path, tuple[str, ...]]:
    """A de-identified DICOM copy for download, in the public folder under a random name (not linkable to the
    hashes the feedback store keeps), and what to tell the user about it (burned-in text or recognisable features:
    the copy says its identity is not removed)."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if not looks_like_dicom(data):
        raise InputError("Only DICOM files carry identifiers to remove; PNG and JPEG uploads have none to strip.")
    folder = out_dir or public_dir() / "deidentified"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"deidentified-{secrets.token_hex(8)}.dcm"
    result = deidentify_isolated(data)  # in a child of the decode server: a raw upload's bytes parse there
    _write_atomic(out, result.data)
    _prune(folder, "*.dcm", MAX_AGE_S, WORK_BUDGET_BYTES)  # bounded in bytes too, as the working copies are
    return out, result.warnings


# ------------------------------------------------------------------------------------------ generated outputs

_PNG_WRITES = 0


#: Held while a public file is handed out (touched, or written anew) and while the pruning checks a file's age and
#: deletes it, so that a file handed out again cannot go between the two (a broken picture in the page just sent).
_HAND_OUT = threading.Lock()


#: The folder :func:`publish` makes for a file handed out under a name of its own: the content's keyed hash.
HAND_OUT_DIR = re.compile(r"[0-9a-f]{32}")  # matched whole


def _unlink_unless_touched(path: Path, not_after: float) -> bool:
    """Delete ``path`` if it was last written or handed out at ``not_after`` or earlier, judged under the hand-out
    lock; whether it went."""
    with _HAND_OUT:
        try:
            if path.stat().st_mtime > not_after:
                return False
            path.unlink()
        except OSError:
            log.debug("An output file was already removed")
            return False
        if HAND_OUT_DIR.fullmatch(path.parent.name):  # a named hand-out's own folder (:func:`publish`), once empty
            _remove_if_empty(path.parent)
        return True


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        log.debug("A hand-out folder still holds another file")


def _listed(folder: Path, pattern: str) -> list[Path]:
    """The files under ``folder`` whose names match ``pattern``, listed before any goes: a hand-out folder another
    pass (the reaper, the stop's sweep) removes meanwhile is skipped, where ``rglob`` raised and stopped the pass."""
    return sorted(Path(root) / name for root, _, names in os.walk(folder) for name in fnmatch.filter(names, pattern))


def _prune(folder: Path, pattern: str, max_age_s: float, max_bytes: int | None = None) -> int:
    """Delete files older than ``max_age_s``; then, if the rest still hold more than ``max_bytes``, the least recently
    handed out first (but never one handed out in the last minute, or since it was listed), so that a flood of
    redraws cannot fill the disk. Returns how many files were deleted."""
    now, removed = time.time(), 0
    kept: list[tuple[float, int, Path]] = []
    for old in _listed(folder, pattern):
        if _unlink_unless_touched(old, now - max_age_s):
            removed += 1
            continue
        try:
            st = old.stat()
        except OSError:
            continue
        kept.append((st.st_mtime, st.st_size, old))
    total = sum(size for _, size, _ in kept)
    for mtime, size, path in sorted(kept):
        if max_bytes is None or total <= max_bytes or mtime > now - 60:
            break
        if _unlink_unless_touched(path, mtime):
            total -= size
            removed += 1
    return removed


#: A key of this process's own for naming public files: a plain hash of the content would let anyone holding the same
#: image tell, by asking for its name, whether it was analysed here lately.
_NAME_KEY = secrets.token_bytes(32)


def content_name(data: bytes) -> str:
    """The public name of ``data``: the same bytes get the same name within this process (one copy, handed out
    again), and no one without the process's key can work it out from the content."""
    return hmac.new(_NAME_KEY, data, hashlib.sha256).hexdigest()[:32]


def public_images_budget() -> int:
    """Bytes the served pictures may take (``MEDIMG_PUBLIC_IMAGES_MB``, default 1024)."""
    return int(settings.number("MEDIMG_PUBLIC_IMAGES_MB", 1024, "megabytes of served images") * 1e6)


def png_file(rgb: np.ndarray, max_age_s: float = MAX_AGE_S) -> str:
    """Write an RGB image as a content-addressed PNG in the public folder and return its path.

    The app hands Gradio file paths rather than arrays: Gradio re-writes a content-hashed cache file for every
    array it is given, so two clinicians receiving the same image at once could download a half-written copy;
    for a path it copies once, atomically. Files older than ``max_age_s`` are pruned now and then.
    """
    global _PNG_WRITES
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="PNG", compress_level=1)
    data = buf.getvalue()
    folder = public_dir() / "images"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{content_name(data)}.png"
    with _HAND_OUT:
        try:
            os.utime(path)  # already there: mark it as just handed out, so pruning does not delete it
        except FileNotFoundError:
            _write_atomic(path, data)
    _PNG_WRITES += 1
    if _PNG_WRITES % 20 == 0:
        _prune(folder, "*.png", max_age_s, public_images_budget())
    return str(path)


#: Feedback and reader-study exports (free-text comments, reader names) are handed out once: kept ten minutes; their
#: names (``kind-<16 hex>.csv``) tell the reaper Gradio's cached copies of them.
EXPORTS_MAX_AGE_S = 600.0
EXPORT_NAME = re.compile(r"^(feedback|reader-study)-[0-9a-f]{16}\.csv$")


def export_path(kind: str) -> Path:
    """A new export's path in the public folder (``kind``: feedback or reader-study)."""
    return public_dir() / "exports" / f"{kind}-{secrets.token_hex(8)}.csv"


def prune_exports(max_age_s: float = EXPORTS_MAX_AGE_S) -> None:
    """Feedback exports are handed out once: remove those older than ten minutes."""
    _prune(public_dir() / "exports", "*.csv", max_age_s)


#: A name :func:`publish` may give a file it hands out: letters, digits, ".", "_" and "-", as the app makes them.
PUBLIC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")  # matched whole (fullmatch: no trailing newline)


def publish(path: str | Path, name: str | None = None) -> str:
    """A copy of a generated file (error-gallery image, report) in the public folder, named by its keyed content
    hash (:func:`content_name`); with ``name``, in a folder so named, under that name, which the browser saves it
    under (a case report). Either way its address cannot be worked out from the content."""
    src = Path(path)
    data = src.read_bytes()
    ext = src.suffix.lower() if src.suffix.lower() in (".png", ".jpg", ".jpeg", ".pdf") else ".bin"
    if name is not None and not PUBLIC_NAME.fullmatch(name):
        raise ValueError(f"not a name to publish a file under: {name!r}")  # the app's own names: a bug, not input
    folder = public_dir() / "published"
    out = folder / content_name(data) / name if name else folder / f"{content_name(data)}{ext}"
    with _HAND_OUT:  # the pruning removes a hand-out's emptied folder under this lock too
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.utime(out)
        except FileNotFoundError:
            try:
                _write_atomic(out, data)
            except OSError:
                if name:  # not an empty hand-out folder left behind, which no pruning would find
                    _remove_if_empty(out.parent)
                raise
    return str(out)
