"""How many uploads are waiting on each raw upload file, so that one request does not delete another's.

Gradio stores an upload at ``<upload folder>/<hash of its bytes>/<file name>``, and the app masks the name to a
run of ``u`` of the same length (``web.upload_names``). Two clinicians who upload the same file (a shared
teaching case, a sample they downloaded) therefore get one path for both uploads, and Gradio's set of uploads holds
it once. A request deletes the raw upload it has read; before this, the first of the two requests deleted the file
the second was about to read ("The file could not be opened"). :class:`UploadRefs` takes the place of that set and
counts the uploads that landed on each path: a request releases one, and the file goes with the last. Uploads no
request used still go after ``MEDIMG_RAW_UPLOAD_TTL_S`` whatever their count (``uploads.expire_raw_uploads``).

Left open: a second upload of the same bytes renamed onto the path in the instant between the first request's
release and its deletion is deleted with it; its request then asks for the file again.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: Counts kept for paths no longer in the set (Gradio's own clean-up removes entries without telling) are dropped
#: once there are this many more counts than entries.
_SLACK = 1000


def _key(path: str | Path) -> str:
    return os.path.realpath(str(path))


class UploadRefs(set):  # type: ignore[type-arg]  # Gradio's set holds str and Path alike
    """Gradio's set of raw upload paths (``Blocks.upload_file_set``) that also counts how many uploads each path
    received; Gradio adds to it with ``update`` on every upload request."""

    def __init__(self, paths: Iterable[Any] = ()) -> None:
        super().__init__()
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.update(paths)

    def update(self, *groups: Iterable[Any]) -> None:  # type: ignore[override]
        with self._lock:
            for group in groups:
                for path in group:
                    self._counts[_key(path)] += 1
                    super().add(path)
            if len(self._counts) > len(self) + _SLACK:
                live = {_key(p) for p in self}
                for key in [k for k in self._counts if k not in live]:
                    del self._counts[key]

    def add(self, path: Any) -> None:
        self.update([path])

    def waiting(self, path: str | Path) -> int:
        """How many uploads of this path no request has released yet."""
        with self._lock:
            return self._counts.get(_key(path), 0)

    def release(self, path: str | Path) -> bool:
        """One request is done with ``path``: True when no other upload waits for it (delete the file now)."""
        key = _key(path)
        with self._lock:
            left = self._counts.get(key, 0) - 1
            if left > 0:
                self._counts[key] = left
                return False
            self._counts.pop(key, None)
            return True

    def forget(self, path: str | Path) -> None:
        """Drop the path's count whatever it is (the file is being deleted by age)."""
        with self._lock:
            self._counts.pop(_key(path), None)


def install(blocks: Any) -> UploadRefs:
    """Put an :class:`UploadRefs` in place of the app's set of uploads (and of Gradio's reference to it among the
    sets its clean-up scans), before the app is launched."""
    refs = UploadRefs(blocks.upload_file_set)
    blocks.temp_file_sets = [refs if s is blocks.upload_file_set else s for s in blocks.temp_file_sets]
    blocks.upload_file_set = refs
    return refs
