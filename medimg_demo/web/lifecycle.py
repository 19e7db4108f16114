"""What the app does when it starts and when it stops: nothing an earlier run or this one wrote outlives it.

At start, :func:`sweep` removes what an earlier run left behind (a crash, a killed process). At stop,
:func:`stop_like_ctrl_c` makes a SIGTERM (how Hugging Face Spaces, Docker and systemd stop a server) end the app as
Ctrl-C does, so Gradio closes its server, and :func:`sweep_at_exit` then removes the cleaned working copies this
process made, Gradio's cached files and the public folder's files, instead of leaving them for the next start. Gradio's
own shutdown clean-up misses some of them (see ``web.expiry``) and does not run at all while a page is still
connected: ``Blocks.close`` waits 5 s for the server thread, and the process ends first.
"""

from __future__ import annotations

import logging
import shutil
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from types import FrameType

from ..paths import DEFAULT_UPLOAD_PREFIX, upload_dir, work_dir
from .expiry import each_alone, expire_cached, expire_public, expire_working_copies, newest_mtime
from .uploads import GRADIO_DIR, WORKING_DIR, remove_stale_tmp_files

log = logging.getLogger(__name__)


def _age(path: Path) -> float:
    newest = newest_mtime(path)
    return time.time() - newest if newest else 0.0


def _remove(entry: Path) -> None:
    shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)


def sweep(max_age_s: float = 60.0, folders: Iterable[Path] | None = None) -> int:
    """Remove what a run left behind; returns how many entries were removed.

    The scratch folder is emptied; in Gradio's upload folder, the folders Gradio names by a hash (uploads and
    cached outputs), our working-copy folders and Gradio's ``tmp*`` files, untouched for ``max_age_s``
    seconds, are removed (nothing else there is touched, in case the folder is shared); in the public folder,
    files older than :data:`MAX_AGE_S`.
    """
    removed = 0
    scratch = work_dir()
    if scratch.is_dir():
        for entry in scratch.iterdir():
            _remove(entry)
            removed += 1
    for folder in folders if folders is not None else [upload_dir()]:
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            ours = entry.is_dir() and (GRADIO_DIR.match(entry.name) or WORKING_DIR.match(entry.name))
            gradio_tmp = entry.is_file() and entry.name.startswith("tmp")
            if (ours or gradio_tmp) and _age(entry) > max_age_s:
                _remove(entry)
                removed += 1
    removed += expire_public()
    if removed:
        log.info("Sweep removed %d leftover upload or scratch entries", removed)
    return removed


def sweep_at_exit() -> int:
    """At stop, once the server is closed: the working copies this process made, Gradio's hash-named cache folders,
    its ``tmp*`` files and the public folder's files (pictures, reports, de-identified copies, exports), whatever
    their age: no page is left to need them (the sample cases are served where they lie, not from the cache). The
    folders are this app's own (README); working copies it did not make and other entries stay. Returns how many
    folders and public files were removed."""
    done = each_alone({"working copies": lambda: expire_working_copies(0.0),
                       "cached files": lambda: expire_cached(0.0, baseline=()),
                       "public files": lambda: expire_public(0.0),  # the reaper may be removing them too
                       "unfinished uploads": lambda: remove_stale_tmp_files(ttl_s=0.0)},  # cut off halfway (or empty)
                      "the next start removes them")
    made, cached, public = done["working copies"], done["cached files"], done["public files"]
    folder = upload_dir()
    if folder.name.startswith(DEFAULT_UPLOAD_PREFIX):  # the folder app.py made for itself: not left empty behind
        for empty in (folder / "vibe_edit_history", folder):  # the first: Gradio makes it at every start
            try:
                empty.rmdir()  # only when empty
            except OSError:
                pass
    if made or cached or public:
        log.info("Removed the %d working copies, %d cached folders and %d public files this run made",
                 made, cached, public)
    return made + cached + public


def _interrupt(signum: int, frame: FrameType | None) -> None:
    signal.signal(signum, signal.SIG_IGN)  # a second signal must not cut the clean-up short (SIGKILL still works)
    raise KeyboardInterrupt(f"signal {signum}")


def stop_like_ctrl_c() -> None:
    """From the main thread, before ``launch``: a SIGTERM raises KeyboardInterrupt there, which Gradio's
    ``block_thread`` answers by closing the server (its own clean-up runs only if no page is still connected), and
    ``launch`` returns, so the caller's :func:`sweep_at_exit` runs. Python's default for SIGTERM ends the process
    at once."""
    signal.signal(signal.SIGTERM, _interrupt)
