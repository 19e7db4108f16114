"""Changes to a model folder's ``config.json``: one at a time, and never seen half-written (torch-free).

Calibration (``calibrate --write``), the gate fit and the ONNX export each read the record, change their part and
write it back. Run side by side on one model (two terminals, or a script looping over models), the later writer
used to put back the record it read before the earlier one wrote, so one change was lost without a word; and two
writers shared a fixed temporary name. Here the read-change-write holds an exclusive lock on the model folder, and
the new record goes to a temporary file of its own that replaces ``config.json`` in one step, so the app (which may
load the model meanwhile) reads the old record or the new one, never a part.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import ModelError

CONFIG_FILE = "config.json"


@contextmanager
def folder_locked(folder: Path) -> Iterator[None]:
    """Hold the exclusive lock on a model folder that every change to its files takes (config.json, pinned files,
    the card). Not re-entrant: a thread holding it that asks again waits for ever."""
    while True:
        fd = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # each call opens its own descriptor: threads exclude each other too
            held, now = os.fstat(fd), os.stat(folder)
        except BaseException:  # the folder went away while this waited (or an interrupt): let the lock go
            os.close(fd)
            raise
        if (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
            break
        os.close(fd)  # the folder was replaced (train --replace) while this waited: lock the one there now
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def temporary_beside(path: Path) -> Path:
    """A new, unique file name in ``path``'s folder for writing ``path``'s next version (hidden; never shared)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def replace_keeping_mode(tmp: Path, path: Path) -> None:
    """Move ``tmp`` onto ``path`` in one step, with ``path``'s permissions (or the folder's, for a new file, without
    its execute bits): a temporary file is created 0600, which must not narrow or widen what the file was."""
    source = path if path.exists() else path.parent
    os.chmod(tmp, source.stat().st_mode & (0o777 if source is path else 0o666))
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file of its own in the same folder (readers see the old text or
    the new, never a part; a failed write leaves the old file)."""
    tmp = temporary_beside(path)
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        replace_keeping_mode(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` as indented JSON to ``path`` through a temporary file of its own in the same folder."""
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")


def require_weights(folder: Path, weights_sha256: str | None, record: dict[str, Any] | None = None) -> None:
    """Refuse to write into ``folder`` (whose lock the caller holds) results computed for weights it no longer pins
    (a training run replaced the model meanwhile); ``record``: its config.json, if already read."""
    record = record if record is not None else json.loads((folder / CONFIG_FILE).read_text())
    if (record.get("weights") or {}).get("sha256") != weights_sha256:
        raise ModelError(f"{folder.name} now holds other weights than the ones this command read (a training run "
                         "replaced it meanwhile); nothing was written. Run the command again.")


def update_config(folder: Path, change: Callable[[dict[str, Any]], None], weights_sha256: str | None = None) -> Path:
    """Apply ``change`` to the record in ``folder/config.json`` (in place) and write it back, with no other
    update of that folder's record in between and no moment at which the file is incomplete; returns the path.
    A file the record pins (gate statistics, the ONNX graph) is put in place inside ``change``, so that the file
    and its pin change together. With ``weights_sha256`` (the weights the change was computed for), a folder whose
    model was replaced meanwhile (``train --replace``) is left as it is."""
    path = folder / CONFIG_FILE
    with folder_locked(folder):
        record = json.loads(path.read_text())
        if weights_sha256 is not None:
            require_weights(folder, weights_sha256, record)
        change(record)
        write_json_atomic(path, record)
    return path


def install_pinned(folder: Path, tmp: Path, key: str, entry: dict[str, Any],
                   check: Callable[[dict[str, Any]], None] | None = None, weights_sha256: str | None = None) -> Path:
    """Move the new file ``tmp`` onto ``folder/entry["file"]`` and record ``entry`` (its sha256 among it) under
    ``key``, both under the folder's lock, so that the file and its pin change together; returns the file's path.
    ``check`` sees the record as it stands under the lock first and may raise to leave file and record as they are
    (a fit whose inputs in config.json changed while it ran)."""
    final = folder / entry["file"]

    def pin(record: dict[str, Any]) -> None:
        if check is not None:
            check(record)
        record[key] = entry
        replace_keeping_mode(tmp, final)

    update_config(folder, pin, weights_sha256)
    return final
