"""Files that take the process decoding them down: marked before their decode, unmarked after.

A decoder that crashes on a damaged or hostile file (a segfault in a C decoder) ends the process that decodes it,
as does the kernel's out-of-memory killer. Ray Data restarts the actor and retries its batch, by default without
end: such a file kept a run going forever (measured: 23 restarts in two minutes on one file, and counting). A run
without Ray died, and its rerun died on the same file, with nothing to say which.

So each file is marked before its decode and unmarked once the decode comes back. A file whose mark is found
:data:`STOPS` times stopped the process that many times: it is not decoded again but written as an 'error' row
(never retried, as a file that does not decode), and the run goes on. Two, not one: a process killed from outside
while a file decoded (a closed terminal) leaves one mark, and that file deserves another try. Ctrl-C does not
count as a stop: a decode it cuts short puts the file's count back (:meth:`DecodeMarks.decoding`), and so do Ray's
actors, stopped with the run, for the files they were decoding (:func:`forget_interrupted`, called before they
are stopped); the stops a file made before are kept. A file with a mark is decoded first in its batch, before the
others' images are held, so that a process that ran out of memory for the batch as a whole does not blame the same
file twice. Only reading and decoding are marked: a process that dies in the batched forward is retried by Ray a
bounded number of times (``ray_run``), then the run ends with a message.

A mark is a file named by the file key (a hash, never the file's name) in a folder beside the table, holding the
number of attempts and the process that made the last; a run that ends without error removes the folder. A folder
of that name that is not a plain folder of this user's (a link, a file) is refused before the run
(:func:`check_folder`). On a Ray cluster (``--ray-address``) actors on other machines cannot see the folder, so the
run's bounded retries end such a run there (``ray_run``).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError

log = logging.getLogger(__name__)

#: Times a file may stop its process before it is written as an error row instead of decoded.
STOPS = 2

STOPPED = ("The file stopped the process decoding it {n} times (the decoder crashed, or the machine's memory ran out), "
           "so it was not decoded again. It may be damaged or built to crash decoders: export it again (uncompressed "
           "DICOM, PNG or JPEG) and run the command on the new file. If memory ran out, a smaller --batch-size and "
           "fewer --concurrency actors leave more for it: a file changed since (a new copy, or touched) is scored "
           "again.")

_KEY = re.compile(r"[0-9a-f]{32}")


def marks_dir(out: Path) -> Path:
    """The folder of decode marks of the table ``out``, beside it."""
    return out.with_name(out.name + ".decoding")


def check_folder(out: Path) -> int:
    """Refuse a marks folder that is not a plain folder (a link would have marks written elsewhere, and a file
    stopped the run with a traceback); log and return how many files an earlier run's process died decoding."""
    folder = marks_dir(out)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise InputError(f"{folder.name} beside the table exists and is not the run's own folder of decode marks (it "
                         "is a link or a file): move it away, or give another --out.")
    n = sum(1 for m in folder.iterdir() if _KEY.fullmatch(m.name)) if folder.is_dir() else 0
    if n:
        log.info("%d files stopped a process decoding them in an earlier run (%s): each is tried until it has done so "
                 "%d times, then written as an error row", n, folder.name, STOPS)
    return n


def clear(out: Path) -> None:
    """Remove the marks of the table ``out`` (a run that ended without error scored every file it listed)."""
    if not marks_dir(out).is_symlink():
        shutil.rmtree(marks_dir(out), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's: alive
        return True
    return True


def forget_interrupted(folder: str | Path) -> None:
    """Put back the count of each file whose decode is still going on in a live process other than this one: the run
    was stopped by hand (Ctrl-C) and Ray's actors are about to be stopped with it, mid-decode, by no fault of the
    file. Marks of processes that died (the files' real stops) are kept."""
    marks = DecodeMarks(folder)
    for mark in marks.folder.glob("*"):
        if _KEY.fullmatch(mark.name):
            n, pid = marks.read(mark.name)
            if pid and pid != os.getpid() and _alive(pid):
                marks.write(mark.name, n - 1)


class DecodeMarks:
    """The marks in ``folder``: how often each file stopped its process, and the mark held while one decodes."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):  # a file key is a hash; anything else must not name a path
            raise ValueError(f"not a file key: {key!r}")
        return self.folder / key

    def read(self, key: str) -> tuple[int, int]:
        """(attempts counted, process of the last) for the file ``key``: (0, 0) without a mark. Never follows a link
        or waits on a pipe put in the mark's place."""
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
            with os.fdopen(fd, "rb") as f:
                parts = f.read(64).split()
            return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
        except (OSError, ValueError, IndexError):  # no mark, or one cut short by the crash it records: none
            return 0, 0

    def write(self, key: str, n: int) -> None:
        """Set the file's count to ``n`` (this process making the attempt), or remove its mark for 0."""
        path = self._path(key)
        if n <= 0:
            path.unlink(missing_ok=True)
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{key}.{os.getpid()}.tmp")
        tmp.write_text(f"{n} {os.getpid()}", encoding="ascii")
        os.replace(tmp, path)  # the count is whole or absent, and a link in its place is replaced, not followed

    def stops(self, key: str) -> int:
        """How many earlier decodes of the file ``key`` never came back (its process ended during them)."""
        return self.read(key)[0]

    def stopped(self, key: str) -> str | None:
        """The error row's reason if the file ``key`` stopped its process :data:`STOPS` times, else None."""
        n = self.stops(key)
        return STOPPED.format(n=n) if n >= STOPS else None

    @contextmanager
    def decoding(self, key: str) -> Iterator[None]:
        """Hold the file's mark (one more attempt counted) while the body decodes it. A decode that comes back, with
        an image or an error, removes the mark; one cut short by Ctrl-C puts the earlier count back; only a process
        that died keeps the attempt."""
        n = self.stops(key)
        self.write(key, n + 1)
        try:
            yield
        except BaseException as exc:
            self.write(key, 0 if isinstance(exc, Exception) else n)
            raise
        self.write(key, 0)
