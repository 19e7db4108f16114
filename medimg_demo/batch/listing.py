"""What a batch run scores: the files under its input, each with the key a rerun skips it by.

A local folder is walked without following symbolic links out of it or into folders: a review of the command line
(thirty-eighth session) found one ``loop -> .`` link turning a folder of one image into 41 rows (``loop/loop/a.png``,
...), two such links listing without end (about 2^40 paths) with nothing printed, and links reading ``/etc/passwd``
and scoring an outside folder's images under a path inside the input. Now a link to a file inside the input is
listed; a link to a folder, or leading outside the input, is skipped and counted (``follow_links``: followed, each
folder once whatever the links, so no loop). The run's own table, its parts and its temporary file are never listed
(a table written inside its input had been scored as an error row on every rerun), nor is the folder its heatmaps go
to. FIFOs, devices and sockets are skipped. A listed file is opened by its real path without following a link
(``pipeline.read_blob``): a link swapped in after the listing is refused, not followed out of the input. Object-store inputs (``s3://``, ``gs://``, ``file://``) are listed by pyarrow's file systems.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..cli_files import shown, userinfo
from ..errors import InputError

log = logging.getLogger(__name__)

#: One listed file: (path to read: a local path or the file's URI, path relative to the input, size, key).
Listed = tuple[str, str, int, str]


def _redacted(message: str, uri: str) -> str:
    """A storage error's first line, without the URI's user name, password or query (they may hold credentials)."""
    from urllib.parse import urlsplit

    first = (message.strip().splitlines() or [""])[0]
    secrets = [userinfo(uri)]
    try:
        secrets.append(urlsplit(uri).query)
    except ValueError:
        secrets.append(uri)
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        first = first.replace(secret, "...")
    return shown(first)


def _filesystem(root: str | Path) -> tuple[Any, str]:
    """(pyarrow file system, path inside it) for a local folder or an object-store URI (s3://, gs://, file://)."""
    from pyarrow import fs

    text = str(root)
    if "://" in text:
        try:
            return fs.FileSystem.from_uri(text)
        except Exception as exc:  # pyarrow raises ArrowInvalid / OSError with a readable message
            raise InputError(f"The batch input {shown(text)} cannot be opened ({_redacted(str(exc), text)}); check "
                             "the URI and credentials.") from None
    return fs.LocalFileSystem(), str(Path(text).resolve())


def _key(rel: str, size: int, mtime_ns: int) -> str:
    """A file's key: the same as pyarrow's listing gave, so that reruns skip it."""
    return hashlib.sha256(f"{rel}\0{size}\0{mtime_ns}".encode()).hexdigest()[:32]


def _utf8(text: str) -> bool:
    try:
        text.encode()
        return True
    except UnicodeEncodeError:  # a name's bytes that are not UTF-8, kept by surrogate escapes
        return False


def _walk(base: Path, exclude: set[Path], follow_links: bool) -> tuple[list[Listed], Counter[str]]:
    """The files under ``base`` (resolved) and what was skipped, by reason."""
    found: list[Listed] = []
    skipped: Counter[str] = Counter()
    seen, stack = {base}, [base]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            skipped["folders that could not be read"] += 1
            continue
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith(".") or path in exclude:
                continue
            read = path  # what is opened: a link's target, read without following links (pipeline.read_blob)
            try:
                if entry.is_symlink():
                    read = target = path.resolve(strict=True)  # a loop or a dangling link: OSError / RuntimeError
                    if any(target.is_relative_to(e) for e in exclude):  # the run's own files under another name
                        continue
                    if not follow_links and (target.is_dir() or not target.is_relative_to(base)):
                        skipped["symbolic links to folders or out of the input"] += 1
                        continue
                elif follow_links:  # under a followed folder: the real path is what is opened
                    read = path.resolve(strict=True)
                if entry.is_dir():  # a real folder, or (follow_links) a linked one
                    real = path.resolve()
                    if real not in seen and real not in exclude:
                        seen.add(real)
                        stack.append(path)
                    continue
                st = entry.stat()
            except (OSError, RuntimeError):
                skipped["entries that could not be read (dangling or looping links, permissions)"] += 1
                continue
            if not stat.S_ISREG(st.st_mode):  # FIFOs, devices, sockets: never opened
                continue
            rel = path.relative_to(base).as_posix()
            if not (_utf8(rel) and _utf8(str(read))):  # the table, Ray and Arrow take UTF-8 text only
                skipped["files whose names are not UTF-8 (rename them to score them)"] += 1
                continue
            found.append((str(read), rel, int(st.st_size), _key(rel, int(st.st_size), int(st.st_mtime_ns))))
    return found, skipped


def list_files(root: str | Path, exclude: Iterable[Path] = (), follow_links: bool = False) -> list[Listed]:
    """Every non-hidden file under ``root`` (recursive; format sniffed later), sorted by relative path; see the
    module for links. ``root``: a local folder or an object-store URI; ``exclude``: paths never listed (the run's
    own table and its parts)."""
    from pyarrow import fs

    filesystem, base = _filesystem(root)
    try:
        info = filesystem.get_file_info(base)
    except OSError as exc:
        raise InputError(f"The batch input {shown(root)} cannot be listed ({_redacted(str(exc), str(root))}); "
                         "check the URI, the network and the credentials.") from None
    if info.type == fs.FileType.NotFound:
        raise InputError(f"The batch input {shown(root)} does not exist: give a folder (or object-store prefix) of "
                         "PNG, JPEG or DICOM files.")
    if info.type != fs.FileType.Directory:
        what = "a file (predict or report reads one file)" if info.type == fs.FileType.File else "not a folder"
        raise InputError("The batch input must be a folder (or object-store prefix) of PNG, JPEG or DICOM files; "
                         f"{shown(root)} is {what}.")
    if "://" not in str(root):
        found, skipped = _walk(Path(base), {Path(p).resolve() for p in exclude}, follow_links)
        for reason, n in sorted(skipped.items()):
            log.warning("%d %s were skipped%s", n, reason,
                        " (--follow-links follows links)" if reason.startswith("symbolic") else "")
        return sorted(found, key=lambda t: t[1])
    uri, found = str(root), []
    try:
        listing = filesystem.get_file_info(fs.FileSelector(base, recursive=True))
    except OSError as exc:
        raise InputError(f"The batch input {shown(root)} cannot be listed ({_redacted(str(exc), uri)}); check the "
                         "URI, the network and the credentials.") from None
    for f in listing:
        rel = f.path[len(base):].lstrip("/")
        if f.type != fs.FileType.File or any(part.startswith(".") for part in rel.split("/")):
            continue
        found.append((f"{uri.rstrip('/')}/{rel}", rel, int(f.size or 0), _key(rel, int(f.size or 0), f.mtime_ns or 0)))
    return sorted(found, key=lambda t: t[1])
