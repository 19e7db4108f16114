"""Files named on the command line: inputs that are files, outputs checked before any work (never an input, never an
existing file replaced unasked, never a folder made where a file was meant), and paths printed so that they cannot
forge a log line or show a secret.

A review of the command line (thirty-eighth session) found ``report scan.dcm --out scan.dcm`` turning the scan into
a PDF, ``predict x.png --heatmap-out x.png`` replacing the input with its own overlay, a bad ``--heatmap-out`` or
``--lesion-masks`` ending in a traceback after the predictions were made, a second run's lesion masks rewriting the
first run's files, and a path with a newline or an ANSI escape printed raw.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .errors import InputError

#: Characters that would break a log line or drive the terminal: C0/C1 controls (newline, ESC), line and paragraph
#: separators, and the bidirectional overrides that reorder what is shown.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def one_line(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``): printed, it cannot start a line or drive the
    terminal."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class OneLineFormatter(logging.Formatter):
    """The command line's log format, each message on one line whatever it quotes (a path with a newline and an
    ANSI escape given to ``--data`` had printed a forged log line); a traceback, where one is logged, follows."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return one_line(super().formatMessage(record))


def userinfo(uri: str) -> str:
    """What lies between a URI's ``://`` and its last ``@`` (user, password: an S3 secret key may hold a "/", which
    a URI parser takes for the start of the path); "" without one."""
    rest = uri.split("://", 1)[1] if "://" in uri else ""
    return rest[:rest.rindex("@")] if "@" in rest else ""


def shown(path: object) -> str:
    """A path or URI as it may be printed: control characters escaped (``\\n``, ``\\x1b``), and of a URI only its
    scheme, host and path (a user name, password or query may hold credentials)."""
    text = str(path)
    if "://" in text:
        scheme, rest = text.split("://", 1)
        secret = userinfo(text)
        rest = rest[len(secret) + 1:] if secret else rest
        try:
            parts = urlsplit(f"{scheme}://{rest}")
            host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
            text = urlunsplit((parts.scheme, host, parts.path, "", ""))
        except ValueError:  # a port that is no number, say: the scheme alone
            text = scheme + "://..."
    return one_line(text)


def input_file(path: Path, name: str | None = None) -> Path:
    """``path`` if it names a file; else an :class:`InputError` saying what it names, calling it ``name`` where
    given ("input 2 of 3": ``predict``'s output names no file, whose name may carry a patient's)."""
    called = name or shown(path)
    if path.is_dir():
        raise InputError(f"{called[:1].upper()}{called[1:]} is a folder: give a file (batch scores a folder).")
    if not path.exists():
        raise InputError(f"No such file: {called}.")
    return path


def _same(a: Path, b: Path) -> bool:
    """Whether two paths name one file (another spelling, a symbolic link or a hard link of it)."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b) or a.resolve() == b.resolve()
    except (OSError, RuntimeError):
        return False


def output_file(out: Path, inputs: Iterable[Path], *, option: str, what: str, example: str,
                suffixes: tuple[str, ...] = (), overwrite: bool = False, inputs_are: str = "the scan") -> Path:
    """Check an output file before any work: not a folder, none of the ``inputs`` (refused even with
    ``overwrite``), not a symbolic link (the file it points to would be written, a dangling one's too), a suffix of
    ``suffixes`` (where the format follows it), in a folder that exists and may be written, and not an existing file
    unless ``overwrite``. ``what``: what to give instead ("the report's file name"); ``example``: a file name to
    offer in a folder given instead of a file; ``inputs_are``: what writing over an input would destroy."""
    example_path = out / example
    if out.is_dir():
        raise InputError(f"{option} {shown(out)} is a folder: give {what}, e.g. {shown(example_path)}.")
    if any(_same(out, Path(src)) for src in inputs):
        raise InputError(f"{option} {shown(out)} is the input: writing it would destroy {inputs_are}; give {what} "
                         "of its own.")
    if out.is_symlink():  # even dangling: the write would land wherever it points
        raise InputError(f"{option} {shown(out)} is a symbolic link (the file it points to would be written): "
                         f"give {what} that is not a link.")
    if suffixes and out.suffix.lower() not in suffixes:
        raise InputError(f"{option} {shown(out)}: give {what} ending in {' or '.join(suffixes)}.")
    folder = out.parent
    if not folder.is_dir():
        raise InputError(f"{option} {shown(out)}: the folder {shown(folder)} does not exist; create it first.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{option} {shown(out)}: the folder {shown(folder)} may not be written; choose another.")
    if out.exists() and not overwrite:
        raise InputError(f"{option} {shown(out)} exists: give another file name, or add --overwrite to replace it.")
    return out


def output_folder(folder: Path, *, option: str) -> Path:
    """An output folder, made if missing (with its parents); an existing file, or a folder that cannot be made or
    written, is an :class:`InputError` before any work."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{option} {shown(folder)} is a file: give a folder (it is made if missing).")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{option} {shown(folder)}: the folder cannot be made ({exc.strerror}).") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{option} {shown(folder)}: the folder may not be written; choose another.")
    return folder


def new_file(folder: Path, stem: str, suffix: str) -> Path:
    """A new ``<stem>_<n:05d><suffix>`` in ``folder``, numbered on from the highest there and created (empty,
    exclusively): a second run into the same folder never rewrites, nor reuses the name of, a file an earlier run's
    output names, even one deleted since."""
    numbers = [int(m.group(1)) for p in folder.glob(f"{stem}_*{suffix}")
               if (m := re.fullmatch(rf"{re.escape(stem)}_(\d+){re.escape(suffix)}", p.name))]
    n = max(numbers, default=-1) + 1
    while True:
        path = folder / f"{stem}_{n:05d}{suffix}"
        try:
            with open(path, "xb"):
                return path
        except FileExistsError:  # another run took it meanwhile
            n += 1
