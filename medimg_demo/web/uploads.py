"""Uploads: a raw upload never outlives its request.

The handler that receives an upload reads it once, deletes Gradio's cached copy (named by the uploaded file name)
and keeps only cleaned bytes: a de-identified DICOM, or a PNG/JPEG with its text and metadata chunks dropped (pixels
unchanged). The cleaned working copy is written into Gradio's upload folder under a random name, so Gradio hands it
out without copying it again. An upload that no request used is deleted after ``MEDIMG_RAW_UPLOAD_TTL_S``
(:func:`expire_raw_uploads`, run by ``web.expiry``'s reaper, which also expires working copies and Gradio's cached
outputs by age); ``web.lifecycle`` removes what a run leaves behind.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import settings
from ..errors import AccessError, InputError
from ..imaging.clean import ACCEPTED, strip_jpeg, strip_png  # noqa: F401 - re-exported
from ..imaging.isolated import clean_isolated
from ..paths import data_root, upload_dir
from .working_copies import (  # noqa: F401 - re-exported: the upload handling's public names
    MADE,
    MADE_LOCK,
    OWNERS,
    WORK_BUDGET_BYTES,
    WORKING_DIR,
    WORKING_PREFIX,
    fit_budget,
    forget,
    is_working_copy,
    mark_used,
    owner_of,
    working_copy,
)

log = logging.getLogger(__name__)

#: Gradio names its cache folders by a seeded SHA-256; ours (``WORKING_DIR``) are WORKING_PREFIX and 32 hex digits.
GRADIO_DIR = re.compile(r"^[0-9a-f]{64}$")

def clean_upload(data: bytes) -> tuple[bytes, str]:
    """(cleaned bytes, extension) of an upload (``imaging.clean``), in a child of the decode server: a hostile file
    parses there, under its memory and time limits (100 MB of empty PNG chunks held the server 3.8 s)."""
    return clean_isolated(data)


def _norm(path: str | Path) -> str:
    return os.path.realpath(str(path))


@functools.lru_cache(maxsize=65536)
def _key(path: str) -> str:
    """An upload's random folder and file name, as a path spells them once "//", "/./" and ".." are read (no system
    call): each upload has a folder of its own (``upload_folders``), so only a path with the same key can name it."""
    p = os.path.normpath(os.path.abspath(path))
    return os.path.join(os.path.basename(os.path.dirname(p)), os.path.basename(p))


def spellings(uploaded: Iterable[str | Path], path: str | Path) -> list[str | Path]:
    """The entries of Gradio's set of raw uploads that name the file ``path`` names, however spelled; the set is
    scanned by key, and only entries with the key are resolved (resolving all of them for every request, and for every
    entry when expiring, took the reaper 20 minutes at 96% CPU over 14,000 unused uploads)."""
    key, target = _key(str(path)), None
    found = []
    for p in list(uploaded):
        if _key(str(p)) == key:
            target = target or _norm(path)
            if _norm(p) == target:
                found.append(p)
    return found


def in_server() -> bool:
    """True inside an event handler of a running Gradio app (Gradio sets its Blocks in a context variable)."""
    try:
        from gradio.context import LocalContext
    except ImportError:  # pragma: no cover - gradio is a runtime dependency of the web part
        return False
    return LocalContext.blocks.get(None) is not None


def is_raw_upload(path: str | Path) -> bool:
    """True for a file Gradio received through its upload route in this server (not an example, not an output,
    not a cleaned working copy). Outside a running server (tests, CLI) nothing is treated as a raw upload."""
    try:
        from gradio.context import LocalContext
    except ImportError:  # pragma: no cover - gradio is a runtime dependency of the web part
        return False
    blocks = LocalContext.blocks.get(None)
    uploaded = getattr(blocks, "upload_file_set", None)
    if not uploaded:
        return False
    return bool(spellings(uploaded, path))


def _inside_data(path: Path) -> bool:
    root = Path(_norm(data_root()))
    target = Path(_norm(path))
    return target == root or root in target.parents


def _forget_upload(path: Path, uploaded: set[str] | None = None) -> None:
    """Delete a raw upload and its Gradio folder; drop it from Gradio's bookkeeping (``uploaded``, else the set of
    the app whose handler is running)."""
    if _inside_data(path):  # a sample case or any file of the data sets: read, never deleted
        return
    try:
        path.unlink(missing_ok=True)
        if GRADIO_DIR.match(path.parent.name):
            path.parent.rmdir()  # only when empty
    except OSError:
        log.debug("A raw upload's folder was not empty or already gone")
    if uploaded is None:
        try:
            from gradio.context import LocalContext
        except ImportError:  # pragma: no cover
            return
        uploaded = getattr(LocalContext.blocks.get(None), "upload_file_set", None)
    if uploaded is not None:
        for p in spellings(uploaded, path):
            uploaded.discard(p)


#: An upload no event has used after this many seconds is deleted (the browser uses it within a second; an API
#: client calls /predict right after uploading).
RAW_UPLOAD_TTL_S = settings.number("MEDIMG_RAW_UPLOAD_TTL_S", 120, "seconds a raw upload may wait", low=1)


def expire_raw_uploads(uploaded: set[str], ttl_s: float = RAW_UPLOAD_TTL_S) -> int:
    """Delete raw uploads that no event consumed within ``ttl_s`` seconds; returns how many."""
    cutoff, removed = time.time() - ttl_s, 0
    by_file: dict[str, list[str | Path]] = {}
    for p in list(uploaded):  # each entry resolved once a pass, its spellings grouped
        by_file.setdefault(_norm(p), []).append(p)
    for target, named in by_file.items():
        try:
            old = os.lstat(target).st_mtime < cutoff
        except OSError:
            old = True  # already gone: forget it
        if old:
            _forget_upload(Path(target), set())  # deleted; its spellings are dropped here, not by another scan
            for p in named:
                uploaded.discard(p)
            removed += 1
    return removed


def remove_stale_tmp_files(ttl_s: float) -> int:
    """Gradio's top-level ``tmp*`` files in its upload folder untouched for ``ttl_s`` seconds; returns how many went.
    Gradio streams each upload into such a file and renames it into a cache folder when the upload completes; it
    deletes the file on a parse error but not when the client goes away mid-upload, which left the partial upload
    (a DICOM's header, with the patient's name, comes first) until the next start. gr.File leaves an empty one on
    every call (the app's file boxes do not: ``ui.common.no_empty_temp_files``). An upload in progress keeps writing, so its file stays fresh."""
    folder, cutoff, removed = upload_dir(), time.time() - ttl_s, 0
    if not folder.is_dir():
        return 0
    for entry in folder.glob("tmp*"):
        try:
            if entry.is_file() and not entry.is_symlink() and (ttl_s <= 0 or entry.lstat().st_mtime < cutoff):
                entry.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def read_upload(path: str | Path, consume: bool) -> bytes:
    """The bytes of an upload; with ``consume``, the file is deleted whatever happens next (a refused or broken
    upload is not kept either)."""
    from ..imaging.decode import MAX_BYTES

    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise InputError(f"The file is {size / 1e6:.0f} MB, over the limit of {MAX_BYTES / 1e6:.0f} MB set for this server.")
        return p.read_bytes()
    except OSError as exc:
        raise InputError("The file could not be opened; upload it again.") from exc
    finally:
        if consume:
            _forget_upload(p)


@contextmanager
def used_up(path: str | Path | None) -> Iterator[None]:
    """A request's upload: whatever the request does (a refused frame number, a report asked for before any result),
    a raw upload does not outlive it; a working copy or a sample case is left alone."""
    try:
        yield
    finally:
        if path is not None and is_raw_upload(path):
            _forget_upload(Path(path))


def check_owner(path: str | Path, request: Any = None, profile: Any = None) -> None:
    """With logins on, a working copy is used only under the login it was uploaded under: its random path, seen by
    another login (a shared screen, a log, a borrowed page), is not a key to the scan. A working copy whose owner
    this process does not know (an earlier run's, or another process's sharing the folder) is refused too: the
    check fails closed. Raises AccessError."""
    from . import auth

    owner = owner_of(path)
    if owner is None and auth.logins_on() and is_working_copy(path):  # shaped as ours, its owner unknown: refused
        raise AccessError("This file's upload is no longer known to the app (it restarted, or the copy expired): "
                          "upload the scan again to use it.")
    if owner and not auth.is_owner_of(request, profile, owner):
        raise AccessError("This file was uploaded under another login: upload the scan again to use it.")


def to_analyse(path: str | Path, request: Any = None, profile: Any = None) -> str | Path | bytes:
    """What to analyse: a raw upload (sent straight to the API) is read once, deleted, and cleaned in memory; a
    cleaned working copy (the caller's own: :func:`check_owner`) or a sample case is read from disk by the decoder."""
    if is_raw_upload(path):
        return clean_upload(read_upload(path, consume=True))[0]
    check_owner(path, request, profile)
    mark_used(path)
    return path
