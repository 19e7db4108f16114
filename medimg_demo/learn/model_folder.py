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
import functools
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, ParamSpec, TypeVar

from ..errors import OptionError
from ..models.config_file import folder_locked

log = logging.getLogger(__name__)

_WORK, _FINISHED, _LOCK = ".training-", ".finished-", ".lock"
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
P, R = ParamSpec("P"), TypeVar("R")


def _holds_something(out: Path) -> bool:
    return out.exists() and (not out.is_dir() or any(out.iterdir()))


def refuse_replacing(out: Path, replace: bool) -> None:
    """Refuse, before any work, a run whose model folder ``out`` already holds something, unless ``replace``."""
    if _holds_something(out) and not replace:
        what = "a model" if (out / "config.json").is_file() else "files"
        raise OptionError(f"{out} already holds {what}; this run would replace it. Give another --id, or --out DIR to "
                          f"write it elsewhere (a model card's commands rebuild it in runs/reproduce/<id>), or "
                          f"--replace to replace it once the run has finished.")


def _lock_of(work: Path) -> Path:
    return work.with_name(work.name + _LOCK)


def _claimed(lock: Path, create: bool = False) -> IO[str] | None:
    """Hold ``lock`` without waiting: the open file, which keeps it while it lives, or None if a live run holds it
    (or, unless ``create``, the file is gone: its run has just finished)."""
    try:
        fd = os.open(lock, os.O_RDWR | (os.O_CREAT if create else 0), 0o600)
    except FileNotFoundError:
        return None
    fh = os.fdopen(fd, "r+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def _discard(work: Path, held: IO[str]) -> None:
    """Remove a work folder and then its lock file, whose lock ``held`` is."""
    shutil.rmtree(work, ignore_errors=True)
    _lock_of(work).unlink(missing_ok=True)
    held.close()


_RUNS = threading.local()  # the work folders made by the train() calls running in this thread


def cleans_up(train: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``train`` so that a run that raises (an error, Ctrl-C) removes the work folder it made at once."""

    @functools.wraps(train)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        outer, made = getattr(_RUNS, "made", None), []
        _RUNS.made = made
        try:
            return train(*args, **kwargs)
        except BaseException:
            for work, held in made:
                _discard(work, held)
            raise
        finally:
            _RUNS.made = outer

    return run


def work_folder(out: Path) -> tuple[Path, IO[str]]:
    """A new hidden folder beside ``out`` for this run to write into (with the parent's permissions), and the open
    lock file beside it that marks it as in use while it stays open: :func:`install` closes it, a run that raises
    removes the folder (:func:`cleans_up`). Work folders of runs of this model whose lock is free (a killed run, or
    a machine restarted) are removed first; a folder without a lock file is not known to be a run's, and stays."""
    out.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{out.name}{_WORK}"
    for old in out.parent.glob(prefix + "*"):
        held = _claimed(_lock_of(old)) if old.is_dir() else None
        if held is not None:
            log.info("Removing %s, left by a training run that stopped", old.name)
            _discard(old, held)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=prefix))
    os.chmod(work, out.parent.stat().st_mode & 0o777)
    held = _claimed(_lock_of(work), create=True)
    assert held is not None  # a lock file just made: no one else holds it
    if isinstance(getattr(_RUNS, "made", None), list):
        _RUNS.made.append((work, held))
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


def _keep_aside(work: Path, out: Path, why: str) -> OptionError:
    """Move a finished run out of the work name, so that no clean-up removes it, and say where it is."""
    kept = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}{_FINISHED}"))
    os.replace(work, kept)
    return OptionError(f"{why}; the finished model is in {kept}: move it where you want it.")


def install(work: Path, out: Path, replace: bool, held: IO[str]) -> None:
    """Move the finished run's folder ``work`` to ``out``. With ``replace``, an existing folder is exchanged with it
    in one step (under its lock, so no config.json change lands in between; where the system cannot swap two
    folders at once, two renames leave ``out`` absent for a moment) and then removed. A folder that appeared at
    ``out`` while the run trained is never replaced without ``replace``, and a run that cannot be put in place is
    kept aside, never removed. The run's lock (``held``) is let go once its folder has left the work name."""
    try:
        _install(work, out, replace)
    except OSError as exc:
        raise _keep_aside(work, out, f"{out} could not be replaced ({exc.strerror})") from exc
    finally:
        if not work.exists():
            _lock_of(work).unlink(missing_ok=True)
            held.close()


def _install(work: Path, out: Path, replace: bool) -> None:
    if out.is_dir() and not _holds_something(out):
        out.rmdir()
    if not out.exists():
        try:
            os.rename(work, out)
            return
        except OSError as exc:  # another run installed there since the check
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            if not replace:
                raise _keep_aside(work, out, f"{out} was made by something else while this run trained") from exc
    if not replace:
        raise _keep_aside(work, out, f"{out} was made by something else while this run trained")
    with folder_locked(out):
        if not _exchange(work, out):
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.replaced-"))
            os.replace(out, old)  # onto the empty folder just made
            try:
                os.rename(work, out)
            except OSError:
                os.replace(old, out)  # the old model back in place; the run is kept aside by the caller
                raise
            work = old
    shutil.rmtree(work, ignore_errors=True)  # the old model
    log.info("Replaced %s with the model this run trained", out)
