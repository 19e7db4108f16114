"""ASGI middleware: Gradio's upload-progress ids, bounded, forgotten, and bound to their login.

The page names each upload with a random id (``POST /gradio_api/upload?upload_id=...``) and follows it on
``GET /gradio_api/upload_progress?upload_id=...`` (the uploaded name, masked by ``upload_names``, and the bytes so
far). Gradio keeps an event per id ever asked about and never forgets it, whatever its length, and the progress of
an upload nobody follows: 6,000 asks for made-up ids of 8,000 characters kept 63 MB of the server (about 10 KB
each), and every honest upload left its event behind. Here:

* an id must be 1-64 characters of ``[A-Za-z0-9_-]`` (the page makes 13 of ``[0-9a-z]``); another gets HTTP 400;
* when a request naming ids ends, Gradio's event for each id it no longer tracks is dropped; an upload's progress
  nobody followed is dropped :data:`FORGET_AFTER_S` after its upload (at most :data:`PENDING` remembered);
* with logins on, an id is bound to the login that first named it, as page sessions are
  (``session_binding``): another login's ask gets HTTP 403.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qs

from . import auth
from .request_limits import is_upload
from .session_binding import _ANONYMOUS, SessionBinding, _refuse, login_of

log = logging.getLogger(__name__)

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: An upload's progress nobody followed is dropped this long after the upload (a page follows it as it goes).
FORGET_AFTER_S = 300.0
#: Uploads remembered for that (past it, the oldest is dropped at once).
PENDING = 10_000


def _progress_route(scope: dict) -> bool:
    return (scope.get("type") == "http" and scope.get("method") == "GET"
            and scope.get("path", "").rstrip("/").endswith("/gradio_api/upload_progress"))


def gradio_statuses() -> Any:  # noqa: ANN401 - Gradio's FileUploadProgress, if this Gradio has one
    """Gradio's upload-progress table (``gradio.routes.file_upload_statuses``), or None if this Gradio keeps none
    where this module looks (then only the bounds on ids and the binding apply)."""
    from gradio import routes

    statuses = getattr(routes, "file_upload_statuses", None)
    ok = all(isinstance(getattr(statuses, name, None), dict) for name in ("_statuses", "_signals"))
    return statuses if ok else None


class GuardUploadProgress:
    """The middleware (see the module's doc)."""

    def __init__(self, app: Any, binding: SessionBinding | None = None, statuses: Any = None) -> None:  # noqa: ANN401
        self.app = app
        self.binding = binding or SessionBinding()
        self.statuses = statuses if statuses is not None else gradio_statuses()
        if self.statuses is None:
            log.warning("This Gradio keeps no upload-progress table where expected; its events are not pruned")
        self.on, self.passwords = auth.logins_on(), auth.credentials() is not None
        self._uploads: OrderedDict[str, float] = OrderedDict()  # ids of finished uploads -> when

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        progress = _progress_route(scope)
        if not (progress or is_upload(scope)):
            await self.app(scope, receive, send)
            return
        ids = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True).get("upload_id", [])
        if not all(_ID.fullmatch(i) for i in ids):
            await _refuse(send, 400, b"Not an upload id.")
            return
        if self.on and ids:
            login = login_of(scope)
            bind = login != _ANONYMOUS or not self.passwords
            if not all([self.binding.allows(i, login, bind) for i in ids]):
                log.warning("A request named the upload of another login; refused")
                await _refuse(send, 403, b"This upload belongs to another login.")
                return
        try:
            await self.app(scope, receive, send)
        finally:
            if ids and self.statuses is not None:
                self._forget(ids, progress)

    def _forget(self, ids: list[str], progress: bool) -> None:
        """Runs in the event loop, as Gradio's own use of the table does."""
        statuses, now = self.statuses, time.monotonic()
        if progress:  # followed to its end (or never found): the event goes unless the upload is still tracked
            for i in ids:
                if i not in statuses._statuses:
                    statuses._signals.pop(i, None)
        else:
            for i in ids:
                self._uploads[i] = now
                self._uploads.move_to_end(i)
        while self._uploads:
            oldest, when = next(iter(self._uploads.items()))
            if now - when < FORGET_AFTER_S and len(self._uploads) <= PENDING:
                break
            self._uploads.popitem(last=False)
            statuses.stop_tracking(oldest)
            statuses._signals.pop(oldest, None)
