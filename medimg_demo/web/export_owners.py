"""Feedback exports answer over HTTP only the login that asked for them.

An export (``feedback-<16 hex>.csv``, ``reader-study-<16 hex>.csv``) lies in the public folder for ten minutes
(``outputs.prune_exports``) and was served to anyone logged in who had its address: an owner's export, truth and every
reader's answers included, went to any other login its link reached (a shared screen, a pasted link, the browser's
history on a shared workstation; hostile review, thirty-seventh session). With logins on, each export is recorded
with the login that asked for it, and a request naming it under another login (or none) gets HTTP 403. Without
logins there is no one to tell apart, as everywhere in the app.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from . import auth
from .request_limits import _refuse
from .session_binding import login_of

#: An export's file name, wherever it stands in a request's path (any spelling of the folders before it).
EXPORT_NAME = re.compile(r"(?:feedback|reader-study)-[0-9a-f]{16}\.csv", re.IGNORECASE)
#: Exports remembered (far more than ten minutes of them; the oldest forgotten first, then answered to no one).
MAX_REMEMBERED = 10_000

_owners: OrderedDict[str, str] = OrderedDict()  # export name (lower case) -> the login key ``login_of`` gives
_lock = threading.Lock()


def _key(user: str) -> str:
    """``login_of``'s name for a reader ``auth.identity`` named: a password login where passwords are set, else the
    Hugging Face account."""
    return f"login:{user}" if auth.credentials() is not None else f"hf:{user}"


def record(path: str | Path, user: str) -> None:
    """An export was written for ``user`` (``auth.identity``); nothing to record without logins."""
    if not auth.logins_on():
        return
    with _lock:
        _owners[Path(path).name.lower()] = _key(user)
        while len(_owners) > MAX_REMEMBERED:
            _owners.popitem(last=False)


def refused(scope: dict) -> bool:
    """Whether a request names an export of another login (or one no longer remembered, with logins on)."""
    path = unquote(scope.get("path", "")) + "?" + unquote(scope.get("query_string", b"").decode("latin-1"))
    names = {n.lower() for n in EXPORT_NAME.findall(unquote(path))}
    if not names or not auth.logins_on():
        return False
    caller = login_of(scope)
    with _lock:
        return any(_owners.get(n) != caller for n in names)


class ExportsForTheirLogin:
    """The middleware (see the module's doc)."""

    def __init__(self, app: Any) -> None:  # noqa: ANN401
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:  # noqa: ANN401
        if scope.get("type") == "http" and refused(scope):
            await _refuse(send, 403, "This export was made for another login: export the feedback again from your "
                                     "own Feedback summary tab.")
            return
        await self.app(scope, receive, send)
