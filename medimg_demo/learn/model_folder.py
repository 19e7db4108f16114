"""Where a training run writes its model folder: nowhere the app or a later command reads it until it is finished.

Training used to write ``models/<id>/`` in place, epoch by epoch. Run as a model card prints it (``train --id`` the
served model's id), it put an early epoch's weights under a config.json that still pinned the old ones, so the app
refused that model until the run ended; a run stopped early left it so; and the old gate, ONNX graph and card stayed
beside weights they were not made for. Now a run writes a hidden work folder beside the model folder and moves it
into place when finished. A folder that already holds something is replaced only when asked (``--replace``), whole.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO

from ..errors import OptionError
from ..models.config_file import folder_locked

log = logging.getLogger(__name__)

_WORK, _FINISHED, _LOCK = ".training-", ".finished-", ".lock"
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _holds_something(out: Path) -> bool:
    return out.exists() and (not out.is_dir() or any(out.iterdir()))


def refuse_replacing(out: Path, replace: bool) -> None:
    """Refuse, before any work, a run whose model folder ``out`` already holds something, unless ``replace``."""
    if _holds_something(out) and not replace:
        what = "a model" if (out / "config.json").is_file() else "files"
        raise OptionError(f"{out} already holds {what}; this run would replace it. Give another --id, or --out DIR to "
                          f"write it elsewhere (to reproduce a bundled model beside it: --out runs/reproduce), or "
                          f"--replace to replace it once the run has finished.")


def _claimed(folder: Path) -> IO[str] | None:
    """Hold the lock of a work folder (its ``.lock`` file) without waiting: the open file, which keeps it while
    it lives, or None if a live run holds it."""
    fh = open(folder / _LOCK, "a")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def work_folder(out: Path) -> tuple[Path, IO[str]]:
    """A new hidden folder beside ``out`` for this run to write into (with the parent's permissions), and the open
    lock file that marks it as in use for as long as it stays open (the run's life; a run that raised lets it go
    when its frame is collected). Work folders of runs of this model whose lock is free (killed, failed, or the
    machine restarted) are removed first."""
    out.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{out.name}{_WORK}"
    for old in out.parent.glob(prefix + "*"):
        fh = _claimed(old) if (old / _LOCK).is_file() else None
        if fh is not None:
            log.info("Removing %s, left by a training run that stopped", old.name)
            shutil.rmtree(old, ignore_errors=True)
            fh.close()
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=prefix))
    os.chmod(work, out.parent.stat().st_mode & 0o777)
    held = _claimed(work)
    assert held is not None  # a folder just made: no one else holds its lock
    return work, held


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system or file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _keep_aside(work: Path, out: Path) -> OptionError:
    kept = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}{_FINISHED}"))
    os.replace(work, kept)
    (kept / _LOCK).unlink(missing_ok=True)
    return OptionError(f"{out} was made by something else while this run trained; the finished model is in {kept}: "
                       f"move it where you want it.")


def install(work: Path, out: Path, replace: bool) -> None:
    """Move the finished run's folder ``work`` to ``out``. With ``replace``, an existing folder is exchanged with it
    in one step (under its lock, so no config.json change lands in between; where the system cannot swap two
    folders at once, two renames leave ``out`` absent for a moment) and then removed. A folder that appeared at
    ``out`` while the run trained is never replaced without ``replace``: the run is kept aside."""
    (work / _LOCK).unlink(missing_ok=True)
    if out.is_dir() and not _holds_something(out):
        out.rmdir()
    if not out.exists():
        try:
            os.rename(work, out)
            return
        except OSError as exc:  # another run installed there since the check
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not replace:
                raise _keep_aside(work, out) from exc
    if not replace:
        raise _keep_aside(work, out)
    with folder_locked(out):
        if not _exchange(work, out):
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.replaced-"))
            os.replace(out, old)  # onto the empty folder just made
            os.rename(work, out)
            work = old
    shutil.rmtree(work, ignore_errors=True)  # the old model
    log.info("Replaced %s with the model this run trained", out)
