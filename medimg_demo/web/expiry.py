"""Expiry while the app runs: what it handed out goes after ``MEDIMG_FILE_MAX_AGE_S``, whatever Gradio tracks.

Gradio's ``delete_cache`` removes the files it cached only for the components it knows. An output whose component
is updated with new properties as well as a value (``gr.update(value=..., visible=True)``: the report and the
de-identified copy buttons) is cached by a session copy of that component, which Gradio's clean-up never visits
(Gradio 6.31, ``Blocks.postprocess_data``), so such a copy stayed in Gradio's cache for as long as the server ran,
and after it. So the app expires the cache itself, by age, as Gradio does for the files it tracks:

* Gradio's hash-named cache folders made after start (:func:`cache_baseline` holds the ones made while the app was
  built, such as initial values, which Gradio keeps for the app's life; the sample cases are not copied at all,
  see ``ui.analyse_tab``);
* the cleaned working copies this process made (``uploads.MADE``);
* the public folder's files (pictures, reports, de-identified copies, exports), which were pruned only when the
  next file of their kind was written or at the next start (a picture handed out again while the reaper prunes
  stays: ``outputs._HAND_OUT``);
* the analysed views kept in memory for redraws (``view_store``: a scan's pixels), unused for that long;
* raw uploads no request used, and uploads a client abandoned halfway (Gradio's ``tmp*`` files), after
  ``MEDIMG_RAW_UPLOAD_TTL_S``; feedback exports after ten minutes, as when the next export is written.

One daemon thread (:func:`start_reaper`) does all of it every quarter of the shorter of the two ages (1 to 60 s).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..paths import public_dir, upload_dir
from .outputs import EXPORT_NAME, EXPORTS_MAX_AGE_S, MAX_AGE_S, _prune
from .uploads import (
    GRADIO_DIR,
    MADE,
    MADE_LOCK,
    RAW_UPLOAD_TTL_S,
    expire_raw_uploads,
    forget,
    remove_stale_tmp_files,
)

log = logging.getLogger(__name__)


def newest_mtime(path: Path) -> float:
    """The latest modification time of ``path`` and everything in it; now, if it changed while being read (a file
    came or went: it is in use, and nothing is removed on a guess)."""
    try:
        return max((p.lstat().st_mtime for p in [path, *path.rglob("*")]), default=0.0)
    except OSError:
        return time.time()


def cache_baseline(folder: Path | None = None) -> frozenset[Path]:
    """Gradio's hash-named cache folders that exist now: called at start, after the start-up sweep and once the
    app is built, these hold what Gradio keeps for the app's life (sample cases, initial values)."""
    folder = folder or upload_dir()
    if not folder.is_dir():
        return frozenset()
    return frozenset(p for p in folder.iterdir() if p.is_dir() and GRADIO_DIR.match(p.name))


def _remove_older(folder: Path, cutoff: float | None) -> None:
    """Each file in ``folder`` last written before ``cutoff`` (None: all), checked file by file just before it goes,
    then the folders left empty. Gradio names a cache folder by its content and may hand out or write the same file
    again at any moment (it touches or re-creates it); such a file is fresh and stays, and so does its folder."""
    try:
        entries = sorted(folder.rglob("*"), key=lambda p: -len(p.parts))
    except OSError:  # it changed while being listed (Gradio or a request is using it): the next pass sees it again
        return
    for f in entries:
        try:
            if f.is_dir() and not f.is_symlink():
                f.rmdir()  # only when empty
            elif cutoff is None or f.lstat().st_mtime < cutoff:
                f.unlink()
        except OSError:
            continue
    try:
        folder.rmdir()
    except OSError:
        pass


def expire_cached(max_age_s: float, baseline: Iterable[Path], folder: Path | None = None) -> int:
    """Remove Gradio's hash-named cache folders, other than ``baseline``'s, in which nothing was written or handed
    out again (Gradio touches a cached copy it hands out again) for ``max_age_s`` seconds; 0 removes all of them.
    Top-level files and other folders (working copies, anything not Gradio's) are left alone. The folder is this
    app's own (README: never shared with another app or instance)."""
    folder = folder or upload_dir()
    if not folder.is_dir():
        return 0
    keep, now, removed = set(baseline), time.time(), 0
    for entry in folder.iterdir():
        if entry in keep or entry.is_symlink() or not entry.is_dir() or not GRADIO_DIR.match(entry.name):
            continue
        cutoff = now - (min(max_age_s, EXPORTS_MAX_AGE_S) if _holds_export(entry) else max_age_s)
        if max_age_s <= 0 or newest_mtime(entry) < cutoff:
            _remove_older(entry, None if max_age_s <= 0 else cutoff)
            removed += not entry.exists()
    return removed


def _holds_export(folder: Path) -> bool:
    """Whether a Gradio cache folder holds the copy of a feedback export (a page was handed its link): handed out
    once, exports live ten minutes, and their cached copies too."""
    try:
        return any(EXPORT_NAME.match(p.name) for p in folder.iterdir())
    except OSError:
        return False


def expire_working_copies(max_age_s: float) -> int:
    """Remove the cleaned working copies this process made that nobody touched for ``max_age_s`` seconds."""
    cutoff = time.time() - max_age_s
    with MADE_LOCK:
        old = [f for f in MADE if max_age_s <= 0 or newest_mtime(f) < cutoff]
        forget(old)
    for f in old:
        shutil.rmtree(f, ignore_errors=True)
    return sum(not f.exists() for f in old)


def expire_public(max_age_s: float = MAX_AGE_S) -> int:
    """Remove the public folder's files older than ``max_age_s`` (feedback exports: ten minutes at most); returns
    how many."""
    public, removed = public_dir(), 0
    if not public.is_dir():
        return 0
    for sub in public.iterdir():
        if sub.is_dir() and not sub.is_symlink():
            removed += _prune(sub, "*", min(max_age_s, EXPORTS_MAX_AGE_S) if sub.name == "exports" else max_age_s)
    return removed


def expire_all(blocks: Any, baseline: Iterable[Path], raw_ttl_s: float = RAW_UPLOAD_TTL_S,
               max_age_s: float = MAX_AGE_S) -> dict[str, int]:
    """One pass of the reaper; how many entries of each kind went. Each kind is tried whatever happens to the
    others (a failure is logged), so one folder changing under it cannot keep the rest for another pass."""
    from . import view_store  # the analysed views (pixels kept in memory for redraws)

    tasks: dict[str, Callable[[], int | None]] = {
        "raw uploads": lambda: expire_raw_uploads(getattr(blocks, "upload_file_set", set()), raw_ttl_s),
        "analysed views": lambda: view_store.expire(max_age_s),
        "cached outputs": lambda: expire_cached(max_age_s, baseline),
        "working copies": lambda: expire_working_copies(max_age_s),
        "public files": lambda: expire_public(max_age_s),
        "stale tmp files": lambda: remove_stale_tmp_files(raw_ttl_s),
    }
    return each_alone(tasks, "trying again at the next pass")


def each_alone(tasks: dict[str, Callable[[], int | None]], then: str) -> dict[str, int]:
    """Run each clean-up task whatever happens to the others; how many entries each removed (0 where it failed,
    logged with ``then``: what happens to what it left)."""
    done: dict[str, int] = {}
    for kind, task in tasks.items():
        try:
            done[kind] = int(task() or 0)
        except Exception:  # noqa: BLE001 - a clean-up that stops would keep files: log and go on
            log.exception("Removing %s failed; %s", kind, then)
            done[kind] = 0
    return done


def start_reaper(blocks: Any, baseline: Iterable[Path], raw_ttl_s: float = RAW_UPLOAD_TTL_S,
                 max_age_s: float = MAX_AGE_S) -> threading.Thread:
    """A daemon thread that runs :func:`expire_all` every quarter of the shorter age (between 1 and 60 s).
    Ages of 0 or less are refused: the reaper would remove what a request has just made."""
    if not (raw_ttl_s > 0 and max_age_s > 0):
        raise ConfigError("MEDIMG_RAW_UPLOAD_TTL_S and MEDIMG_FILE_MAX_AGE_S must be positive numbers of seconds "
                          f"(got {raw_ttl_s:g} and {max_age_s:g}): files would go while a request still needs them.")
    keep, every = frozenset(baseline), min(60.0, max(1.0, min(raw_ttl_s, max_age_s) / 4))

    def run() -> None:
        while True:
            time.sleep(every)
            gone = {k: n for k, n in expire_all(blocks, keep, raw_ttl_s, max_age_s).items() if n}
            if gone:
                log.info("Expired: %s", ", ".join(f"{n} {k}" for k, n in gone.items()))

    thread = threading.Thread(target=run, name="medimg-expiry", daemon=True)
    thread.start()
    return thread
