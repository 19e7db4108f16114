"""The cleaned working copies of uploads this process made: written under random names, touched on use, and kept
within a disk budget (the login holding the most gives up its least recently used first); the reaper
(``web.expiry``) removes them by age."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import threading
from pathlib import Path

from .. import settings
from ..paths import upload_dir

#: Working-copy folders: this prefix and 32 hex digits (:data:`WORKING_DIR` matches them).
WORKING_PREFIX = "medimg-"
WORKING_DIR = re.compile(rf"^{WORKING_PREFIX}[0-9a-f]{{32}}$")

#: The working-copy folders this process made (expired by age and removed when it stops; only these, never another's).
MADE: set[Path] = set()
#: The login each working-copy folder (resolved) was uploaded under ("" without logins): only that login may use it.
OWNERS: dict[Path, str] = {}
MADE_LOCK = threading.Lock()


def working_copy(data: bytes, ext: str, folder: Path | None = None, owner: str = "") -> Path:
    """Write cleaned upload bytes under a random name (never the uploaded name, never a hash that feedback
    keeps) in Gradio's upload folder (or ``folder``), so Gradio serves this one copy and prunes it; ``owner``: the
    login it was uploaded under (see :func:`owner_of`)."""
    folder = (folder or upload_dir()) / f"{WORKING_PREFIX}{secrets.token_hex(16)}"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"scan{ext}"
    try:
        out.write_bytes(data)
    finally:  # registered once written (another upload's budget check never removes it half-written), or if it failed
        with MADE_LOCK:
            if len(MADE) >= 1000:  # bounded: forget the folders already pruned by age
                forget([f for f in MADE if not f.exists()])
            MADE.add(folder)
            OWNERS[folder.resolve()] = owner
    fit_budget(keep=folder)
    return out


def forget(folders: list[Path]) -> None:
    """Drop folders from :data:`MADE` and :data:`OWNERS` (the caller holds :data:`MADE_LOCK`)."""
    MADE.difference_update(folders)
    for f in folders:
        OWNERS.pop(f.resolve(), None)


def _folder(path: str | Path) -> Path | None:
    """The resolved folder of a file (a leading "//", a "/./" or a symlink names the same one); None if unresolvable."""
    try:
        return Path(path).resolve().parent
    except (OSError, RuntimeError, ValueError):
        return None


def is_working_copy(path: str | Path) -> bool:
    """Whether a file lies in a folder named as a working copy's, however its path is spelled (made by this process
    or not)."""
    folder = _folder(path)  # in any case: on a case-insensitive disk "MEDIMG-..." names the same folder
    return folder is not None and bool(WORKING_DIR.match(folder.name.lower()))


def owner_of(path: str | Path) -> str | None:
    """The login a working copy of this process was uploaded under ("" without logins); None: not one of ours,
    however its path is spelled."""
    folder = _folder(path)
    with MADE_LOCK:
        return OWNERS.get(folder) if folder is not None else None


def mark_used(path: str | Path) -> None:
    """A working copy was just used (analysed, reported, copied): the disk budget removes the least recently used
    first, not the oldest written."""
    folder = _folder(path)
    with MADE_LOCK:
        ours = folder is not None and folder in OWNERS
    if ours:
        try:
            os.utime(folder)
        except OSError:
            pass


#: Disk the cleaned working copies may take together (``MEDIMG_WORK_BUDGET_MB``): each lives an hour, so without a
#: bound a client uploading 100 MB files kept an hour of its upload bandwidth on disk.
WORK_BUDGET_BYTES = int(settings.number("MEDIMG_WORK_BUDGET_MB", 2048, "megabytes of working copies") * 2**20)


def _size_and_age(folder: Path) -> tuple[int, float]:
    """(bytes, last written or used: the folder is touched on use, :func:`mark_used`)."""
    try:
        files = [p.lstat() for p in folder.iterdir()]
        return sum(st.st_size for st in files), max([folder.lstat().st_mtime, *(st.st_mtime for st in files)])
    except OSError:
        return 0, 0.0


def fit_budget(keep: Path, budget: int | None = None) -> int:
    """Remove working copies (never ``keep``, the one just written) until all fit in the budget; returns how many
    went. The login holding the most disk gives up its least recently used copy first, so a client that floods
    the budget pushes out its own copies before another reader's (without logins all share one owner, "": the least
    recently used go first). A page whose copy went is asked to upload again, as after the hour."""
    budget = WORK_BUDGET_BYTES if budget is None else budget
    with MADE_LOCK:  # a snapshot: paths are resolved outside the lock every request takes
        made, owners = [f for f in MADE if f != keep], dict(OWNERS)
    others = [(f, owners.get(f.resolve(), "")) for f in made]
    keep_owner = owners.get(keep.resolve(), "")
    queues: dict[str, list[tuple[float, int, Path]]] = {}
    for f, owner in others:
        size, age = _size_and_age(f)
        queues.setdefault(owner, []).append((age, size, f))
    held = {owner: sum(size for _, size, _ in q) for owner, q in queues.items()}
    kept_size = _size_and_age(keep)[0]
    held[keep_owner] = held.get(keep_owner, 0) + kept_size
    total = sum(held.values())
    for q in queues.values():
        q.sort(key=lambda item: item[0], reverse=True)  # the least recently used last, popped first
    removed = 0
    while total > budget and any(queues.values()):
        # the login holding the most; between equal holders, the one whose next copy was used least recently
        owner = max((o for o, q in queues.items() if q), key=lambda o: (held[o], -queues[o][-1][0]))
        _, size, f = queues[owner].pop()
        existed = f.exists()  # one the reaper removed meanwhile frees nothing more and is not counted
        shutil.rmtree(f, ignore_errors=True)
        with MADE_LOCK:
            forget([f])
        total, held[owner], removed = total - size, held[owner] - size, removed + int(existed)
    return removed
