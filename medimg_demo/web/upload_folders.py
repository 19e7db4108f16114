"""Each upload in a folder of its own, so that one request never deletes another client's upload.

Gradio stores an upload at ``<upload folder>/<hash of its bytes>/<file name>``, and the app masks the name to a run
of ``u`` of the same length (``web.upload_names``). Two clinicians who upload the same file (a shared teaching
case, a sample they downloaded) got one path for both uploads; a request deletes the raw upload it has read, so the
first of their requests deleted the file the other was about to read ("The file could not be opened"), and anyone
holding the same bytes could delete another client's upload by naming that path.

Gradio records every upload it has just stored with ``Blocks.upload_file_set.update(paths)`` and then returns that
same list to the client. :class:`UploadFolders` takes the place of that set: as the paths are added it moves each
file into a new random folder (64 hex digits, like Gradio's, so the clean-up treats it as Gradio's) and writes the
new path into the list, so the client is handed a path no other upload shares.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def own_folder(path: str | Path) -> str:
    """Move an upload Gradio just stored into a new random folder beside its hash folder; returns its new path (the
    old one when it cannot be moved, e.g. already gone). The hash folder is left for the clean-up: removing it here
    could race with another upload of the same bytes being renamed into it."""
    src = Path(path)
    folder = src.parent.parent / secrets.token_hex(32)
    try:
        folder.mkdir()
        os.rename(src, folder / src.name)
    except OSError:
        log.warning("An upload could not be moved to a folder of its own; it keeps Gradio's path")
        try:
            folder.rmdir()
        except OSError:
            pass
        return str(path)
    return str(folder / src.name)


class UploadFolders(set):  # type: ignore[type-arg]  # Gradio's set holds str and Path alike
    """Gradio's set of raw upload paths (``Blocks.upload_file_set``) that gives each new upload a folder of its own
    as Gradio adds it (Gradio's upload route calls ``update`` with the list it then returns to the client)."""

    def update(self, *groups: Iterable[Any]) -> None:  # type: ignore[override]
        for group in groups:
            if isinstance(group, list):  # the upload route's own list: rewritten in place
                for i, path in enumerate(group):
                    group[i] = own_folder(path)
                    super().add(group[i])
            else:
                super().update(group)


def install(blocks: Any) -> UploadFolders:
    """Put an :class:`UploadFolders` in place of the app's set of uploads (and of Gradio's reference to it among the
    sets its clean-up scans), before the app is launched."""
    folders = UploadFolders(blocks.upload_file_set)
    blocks.temp_file_sets = [folders if s is blocks.upload_file_set else s for s in blocks.temp_file_sets]
    blocks.upload_file_set = folders
    return folders
