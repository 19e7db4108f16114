"""Files the web app reads, writes and serves.

* **Served**: only what the app made for display lives in the public folder (``paths.public_dir()``): rendered
  PNGs, error-gallery images, report PDFs, feedback exports and de-identified DICOM copies. It is the one entry of
  ``launch(allowed_paths=...)``; the feedback store, runs, scratch folder and logs are in ``blocked_paths``
  (Gradio checks the block list first); every ``/gradio_api/file=`` answer is sent with ``nosniff``, a
  sandboxing CSP and, for anything but a raster image, as a download, and a raw upload is never served back
  (:class:`SecureFileHeaders`).
* **Uploads** are cleaned and never kept raw: see :mod:`.uploads`.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from .. import settings
from ..errors import ConfigError, InputError
from ..imaging.isolated import deidentify_isolated
from ..imaging.dicom import looks_like_dicom
from ..paths import private_paths, public_dir, upload_dir
from .uploads import WORK_BUDGET_BYTES, spellings

log = logging.getLogger(__name__)

#: How long generated and uploaded files are kept (web.expiry's reaper, delete_cache, the public folder's pruning).
MAX_AGE_S = settings.number("MEDIMG_FILE_MAX_AGE_S", 3600, "seconds a served file lives", low=1)
#: Raster types a browser may show inline; everything else served from /file= is a download.
INLINE_TYPES = {b"image/png", b"image/jpeg", b"image/webp", b"image/gif"}


# --------------------------------------------------------------------------------------------- serving policy

def allowed_paths() -> list[str]:
    """Folders the web server may serve from besides Gradio's cache: the public folder only."""
    folder = public_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return [str(folder.resolve())]


def serve_in_place() -> None:
    """The public folder's files are served where they lie (Gradio's static paths), not copied into Gradio's cache
    with each hand-out: those copies were bounded by their age only, so a flood of redraws filled the cache past the
    public folder's byte budgets. Still served only as allowed and not blocked (Gradio checks static files so)."""
    gr.set_static_paths(allowed_paths())


def blocked_paths() -> list[str]:
    """What Gradio must refuse to serve whatever GRADIO_TEMP_DIR and MEDIMG_STATE_DIR are (checked before
    allowed paths and Gradio's own cache): the feedback store and its journals, runs, scratch folder, logs."""
    return [str(p.resolve()) for p in private_paths()]


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def check_layout() -> None:
    """Refuse folder settings under which a private file would be served or a served file blocked."""
    uploads, public = upload_dir(), public_dir()
    for private in private_paths():
        for name, folder in (("GRADIO_TEMP_DIR", uploads), ("the public folder", public)):
            if _inside(folder, private):
                raise ConfigError(f"{name} ({folder.name}) lies inside a private folder of the app ({private.name}); "
                                  "point GRADIO_TEMP_DIR at a folder of its own, outside MEDIMG_STATE_DIR.")
    if _inside(uploads, public):
        raise ConfigError("GRADIO_TEMP_DIR lies inside the public folder (MEDIMG_STATE_DIR/public): uploads would be "
                          "served as generated files. Give GRADIO_TEMP_DIR a folder of its own.")
    try:
        home: list[Path] = [Path.home()]
    except RuntimeError:  # no HOME and no passwd entry (a container under an arbitrary uid)
        home = []
    for shared in (Path(tempfile.gettempdir()), *home):
        if _inside(shared, uploads):
            raise ConfigError(f"GRADIO_TEMP_DIR ({uploads}) is or contains {shared}, a folder other programs use: the app "
                              "removes Gradio's files there by age (tmp* files, hash-named folders) and would remove "
                              "theirs. Give GRADIO_TEMP_DIR a folder of its own.")


async def _not_found(send: Any) -> None:
    await send({"type": "http.response.start", "status": 404,
                "headers": [(b"content-type", b"text/plain"), (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": b"Not found"})


class SecureFileHeaders:
    """ASGI middleware for ``/gradio_api/file=`` answers: never active content inline, never a raw upload, never a
    URL fetched; Gradio's older ``/gradio_api/file/<path>`` route, which serves the same files (and fetches URLs) but
    which the app never links, answers 404.

    Gradio already serves files of its cache that are not raster images as downloads, but serves anything under
    ``allowed_paths`` inline with its guessed type; this makes the rule unconditional: ``nosniff``, a CSP that
    allows nothing (and sandboxes a document), and ``Content-Disposition: attachment`` with a neutral type for
    everything but PNG/JPEG/WebP/GIF.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    @staticmethod
    def _raw_upload(scope: dict) -> bool:
        """Whether the file asked for is a raw upload still waiting for its handler: never served back (the app
        shows uploads only as cleaned copies)."""
        blocks = getattr(scope.get("app"), "get_blocks", lambda: None)()
        uploaded = getattr(blocks, "upload_file_set", None)
        if not uploaded:
            return False
        return bool(spellings(uploaded, scope["path"].split("/file=", 1)[1]))

    @staticmethod
    def _remote(scope: dict) -> bool:
        """Whether the file asked for is a URL: Gradio would fetch it from the server (an open proxy, and the URL,
        which the client chose, in the log); the app never hands out such a link."""
        return scope["path"].split("/file=", 1)[1].strip().lower().startswith(("http:", "https:"))

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope.get("type") == "http" else ""
        if "/gradio_api/file/" in path:  # Gradio's older file route (same files, URLs fetched): the app links none
            await _not_found(send)
            return
        if "/file=" not in path:
            await self.app(scope, receive, send)
            return
        if self._raw_upload(scope) or self._remote(scope):
            await _not_found(send)
            return

        async def guarded_send(message: dict) -> None:
            if message.get("type") == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"content-security-policy", b"x-content-type-options")]
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"").split(b";")[0].strip().lower()
                if ctype not in INLINE_TYPES:
                    headers = [(k, v) for k, v in headers if k.lower() not in (b"content-type", b"content-disposition")]
                    headers += [(b"content-type", b"application/octet-stream"), (b"content-disposition", b"attachment")]
                headers += [(b"x-content-type-options", b"nosniff"),
                            (b"content-security-policy", b"default-src 'none'; sandbox")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, guarded_send)


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


def _unlink_unless_touched(path: Path, not_after: float) -> bool:
    """Delete ``path`` if it was last written or handed out at ``not_after`` or earlier, judged under the hand-out
    lock; whether it went."""
    with _HAND_OUT:
        try:
            if path.stat().st_mtime <= not_after:
                path.unlink()
                return True
        except OSError:
            log.debug("An output file was already removed")
    return False


def _prune(folder: Path, pattern: str, max_age_s: float, max_bytes: int | None = None) -> int:
    """Delete files older than ``max_age_s``; then, if the rest still hold more than ``max_bytes``, the least recently
    handed out first (but never one handed out in the last minute, or since it was listed), so that a flood of
    redraws cannot fill the disk. Returns how many files were deleted."""
    now, removed = time.time(), 0
    kept: list[tuple[float, int, Path]] = []
    for old in folder.glob(pattern):
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


def publish(path: str | Path) -> str:
    """A copy of a generated file (error-gallery image, report) in the public folder, named by its keyed content
    hash (:func:`content_name`)."""
    src = Path(path)
    data = src.read_bytes()
    ext = src.suffix.lower() if src.suffix.lower() in (".png", ".jpg", ".jpeg", ".pdf") else ".bin"
    folder = public_dir() / "published"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{content_name(data)}{ext}"
    with _HAND_OUT:
        try:
            os.utime(out)
        except FileNotFoundError:
            _write_atomic(out, data)
    return str(out)
