"""Files that take the process decoding them down: marked before their decode, unmarked after.

A decoder that crashes on a damaged or hostile file (a segfault in a C decoder) ends the process that decodes it,
as does the kernel's out-of-memory killer. Ray Data restarts the actor and retries its batch, by default without
end: such a file kept a run going forever (measured: 23 restarts in two minutes on one file, and counting). A run
without Ray died, and its rerun died on the same file, with nothing to say which.

So each file is marked before its decode and unmarked after, however the decode ends in Python. A file whose mark
is found :data:`STOPS` times stopped the process that many times: it is not decoded again but written as an 'error'
row (never retried, as a file that does not decode), and the run goes on. Two, not one: a process killed from
outside while a file decoded (a closed terminal; Ray's actors when the run is stopped) leaves one mark, and that file
deserves another try. Ctrl-C removes the marks the run wrote (:func:`forget_since`). A file with a mark is decoded
first in its batch, before the others' images are held, so that a process that ran out of memory for the batch as a
whole does not blame the same file twice. Only reading and decoding are marked: a process that dies in the batched
forward is retried by Ray a bounded number of times (``ray_run``), then the run ends with a message.

A mark is a file named by the file key (a hash, never the file's name) in a folder beside the table, holding the
number of attempts; a run that ends without error removes the folder. On a Ray cluster (``--ray-address``) actors
on other machines cannot see that folder, so the run's bounded retries end such a run there (``ray_run``).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


def clear(out: Path) -> None:
    """Remove the marks of the table ``out`` (a run that ended without error scored every file it listed)."""
    shutil.rmtree(marks_dir(out), ignore_errors=True)


def forget_since(out: Path, since: float) -> None:
    """Remove the marks of the table ``out`` written since ``since`` (a :func:`time.time`): a run stopped by hand
    (Ctrl-C) had Ray's actors killed mid-decode, and their files crashed nothing."""
    folder = marks_dir(out)
    if folder.is_symlink():  # never ours: nothing in it is removed
        return
    for mark in folder.glob("*"):
        try:
            if _KEY.fullmatch(mark.name) and mark.lstat().st_mtime >= since:
                mark.unlink()
        except OSError:  # gone already
            continue


class DecodeMarks:
    """The marks in ``folder``: how often each file stopped its process, and the mark held while one decodes."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):  # a file key is a hash; anything else must not name a path
            raise ValueError(f"not a file key: {key!r}")
        return self.folder / key

    def stops(self, key: str) -> int:
        """How many earlier decodes of the file ``key`` never came back (its process ended during them)."""
        path = self._path(key)
        try:
            return int(path.read_text(encoding="ascii") or 0)
        except (OSError, ValueError):  # no mark, or one cut short by the crash it records: counted as none
            return 0

    def stopped(self, key: str) -> str | None:
        """The error row's reason if the file ``key`` stopped its process :data:`STOPS` times, else None."""
        n = self.stops(key)
        return STOPPED.format(n=n) if n >= STOPS else None

    @contextmanager
    def decoding(self, key: str) -> Iterator[None]:
        """Hold the file's mark (one more attempt counted) while the body decodes it; a Python exception, Ctrl-C
        included, removes it, so only a process that died keeps it."""
        path = self._path(key)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{key}.{os.getpid()}.tmp")
        tmp.write_text(str(self.stops(key) + 1), encoding="ascii")
        os.replace(tmp, path)  # the count is whole or absent
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
