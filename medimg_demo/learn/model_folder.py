"""Where a training run writes its model folder: nowhere the app or a later command reads it until it is finished.

Training used to write ``models/<id>/`` in place, epoch by epoch. Run as a model card prints it (``train --id`` the
served model's id), it put an early epoch's weights under a config.json that still pinned the old ones, so the app
refused that model until the run ended; a run stopped early left it so; and the old gate, ONNX graph and card stayed
beside weights they were not made for. Now a run writes a hidden work folder beside the model folder and moves it
into place when finished. A folder that already holds something is replaced only when asked (``--replace``), whole.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import OptionError
from ..models.config_file import folder_locked

log = logging.getLogger(__name__)

_WORK, _FINISHED = ".training-", ".finished-"


def _holds_something(out: Path) -> bool:
    return out.exists() and (not out.is_dir() or any(out.iterdir()))


def refuse_replacing(out: Path, replace: bool) -> None:
    """Refuse, before any work, a run whose model folder ``out`` already holds something, unless ``replace``."""
    if _holds_something(out) and not replace:
        what = "a model" if (out / "config.json").is_file() else "files"
        raise OptionError(f"{out} already holds {what}; this run would replace it. Give another --id, or --out DIR to "
                          f"write it elsewhere (to reproduce a bundled model beside it: --out runs/reproduce), or "
                          f"--replace to replace it once the run has finished.")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def work_folder(out: Path) -> Path:
    """A new hidden folder beside ``out`` for this run to write into (with the parent's permissions); work folders
    of runs of this model whose process has gone (killed, or the machine restarted) are removed first."""
    out.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{out.name}{_WORK}"
    for old in out.parent.glob(prefix + "*"):
        pid = old.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            log.info("Removing %s, left by a training run that stopped", old.name)
            shutil.rmtree(old, ignore_errors=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f"{prefix}{os.getpid()}-"))
    os.chmod(work, out.parent.stat().st_mode & 0o777)
    return work


def install(work: Path, out: Path, replace: bool) -> None:
    """Move the finished run's folder ``work`` to ``out``: the old folder, with ``replace``, is swapped out in one
    step (under its lock, so no config.json change lands in between) and then removed."""
    if out.is_dir() and not _holds_something(out):
        out.rmdir()
    if not out.exists():
        os.rename(work, out)
        return
    if not replace:  # another run made it while this one trained
        kept = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}{_FINISHED}"))
        os.replace(work, kept)
        raise OptionError(f"{out} was made by something else while this run trained; the finished model is in "
                          f"{kept}: move it where you want it.")
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.replaced-"))
    with folder_locked(out):
        os.replace(out, old)  # onto the empty folder just made
        os.rename(work, out)
    shutil.rmtree(old, ignore_errors=True)
    log.info("Replaced %s with the model this run trained", out)
