"""ASGI middleware: with logins on, a page's Gradio session is bound to the login that first used it.

Gradio keys a page's state and its event stream by a random ``session_hash`` the browser makes, and checks only that
a caller is logged in: any logged-in reader holding another page's hash could read that page's results as they were
sent (``GET /gradio_api/queue/data?session_hash=...``), run events on its state (``POST /gradio_api/queue/join``,
``/gradio_api/run/...``, ``/gradio_api/component_server``) or cancel them (``POST /gradio_api/cancel``). Here the
first request naming a hash binds it to the caller's login (the user of Gradio's login cookie, or the Hugging Face
account of the sign-in session; no sign-in counts as one more identity); a request naming it under another login is
refused with HTTP 403. Without logins there is no identity to
bind to, and nothing changes. Each login's :data:`PER_LOGIN` most recently used hashes are remembered, so neither a
login nor callers with no login can push another login's pages out of the table (only :data:`LOGINS` logins, or
:data:`TOTAL` pages, are: Hugging Face accounts are cheap). An event's id (``GET /call/{api}/{event_id}``) is checked
as a hash too; another page's event ids are random and sent to that page alone.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import cookie_parser

from . import auth

log = logging.getLogger(__name__)

#: Page sessions remembered per login (its least recently used forgotten first: one login flooding the table forgets
#: its own pages, never another's); the one anonymous identity of a Hugging Face Space's signed-out visitors gets more.
PER_LOGIN = 1_000
PER_ANONYMOUS = 10_000
#: Logins remembered (the least recently active forgotten first): password logins are the deployer's few; Hugging
#: Face accounts are no scarce identity (the README says so of the disk budget too).
LOGINS = 5_000
#: All page sessions remembered (past it, the least recently active login's oldest page goes first).
TOTAL = 50_000
#: Largest body read to find a hash (the request-size middleware has bounded every body before this one runs).
_MAX_BODY = 256 * 1024
_ANONYMOUS = "\x00anonymous"
#: A session hash as Gradio's page makes one (about 11 characters of [0-9a-z]); a longer or stranger one is refused,
#: not remembered (250 KB hashes grew the table by 250 KB a request).
_HASH = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _route(scope: dict) -> str | None:
    """How a request may name a session hash: "body" (a JSON POST to Gradio's API: queue/join, cancel, run, api,
    call, component_server, reset, ...; uploads are multipart and name none), "query" (the event stream), "path" (the
    heartbeat, a stream's playlist, and ``GET /call/{api}/{id}``, which streams the session ``id`` names where it is
    no event's id); None for the rest."""
    path, method = scope.get("path", "").rstrip("/"), scope.get("method")
    if "/gradio_api/" not in path:
        return None
    if method == "POST" and not path.endswith("/gradio_api/upload"):
        return "body"
    if method == "GET" and path.endswith("/gradio_api/queue/data"):
        return "query"
    if method == "GET" and any(f"/gradio_api/{r}/" in path for r in ("heartbeat", "stream", "call")):
        return "path"
    return None


def login_of(scope: dict) -> str:
    """The caller's login: the user Gradio's login cookie names, else the Hugging Face account of the sign-in session,
    else one shared anonymous identity."""
    app = scope.get("app")
    cookies: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        if name == b"cookie":  # Starlette's lenient parser, as Gradio reads them (SimpleCookie stops at a bad one)
            cookies.update(cookie_parser(value.decode("latin-1")))
    cookie_id = getattr(app, "cookie_id", None)
    tokens = getattr(app, "tokens", None) or {}
    for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
        if (user := tokens.get(cookies.get(name))):
            return f"login:{user}"
    info = (scope.get("session") or {}).get("oauth_info") or {}
    user = (info.get("userinfo") or {}).get("preferred_username") if isinstance(info, dict) else None
    return f"hf:{user}" if user else _ANONYMOUS


class SessionBinding:
    """Remembers which login first named each session hash, within a quota per login."""

    def __init__(self, per_login: int = PER_LOGIN, per_anonymous: int = PER_ANONYMOUS, logins: int = LOGINS) -> None:
        self.per_login, self.per_anonymous, self.logins = per_login, per_anonymous, logins
        self._owner: dict[str, str] = {}
        self._pages: OrderedDict[str, OrderedDict[str, None]] = OrderedDict()  # login -> its hashes, oldest first
        self._lock = threading.Lock()

    def allows(self, session_hash: str, login: str, bind: bool = True) -> bool:
        """Whether ``login`` may use ``session_hash``: bound to it, or new (then bound to it, if ``bind``)."""
        with self._lock:
            owner = self._owner.get(session_hash)
            if owner is not None:
                if owner == login:
                    self._pages[login].move_to_end(session_hash)
                    self._pages.move_to_end(login)
                return owner == login
            if bind:
                self._bind(session_hash, login)
            return True

    def _bind(self, session_hash: str, login: str) -> None:
        pages = self._pages.setdefault(login, OrderedDict())
        self._pages.move_to_end(login)
        pages[session_hash] = None
        while len(pages) > (self.per_anonymous if login == _ANONYMOUS else self.per_login):
            self._owner.pop(pages.popitem(last=False)[0], None)
        self._owner[session_hash] = login
        while len(self._pages) > self.logins or len(self._owner) > TOTAL:
            oldest_login, oldest = next(iter(self._pages.items()))
            if len(self._pages) > self.logins or len(oldest) <= 1:
                self._pages.pop(oldest_login)
                for h in oldest:
                    self._owner.pop(h, None)
            else:
                self._owner.pop(oldest.popitem(last=False)[0], None)


async def _read_body(receive: Any) -> tuple[bytes, list[dict]]:
    chunks, messages, size = [], [], 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if not message.get("more_body") or size > _MAX_BODY:
            break
    return b"".join(chunks), messages


def _hashes_in(route: str, scope: dict, body: bytes) -> list[str]:
    """Every session hash a request names: all of a repeated query parameter (Starlette takes the last, a check of
    the first alone would be passed by naming one's own hash first)."""
    if route == "path":  # /heartbeat/{hash}, /stream/{hash}/{run}/..., /call/{api}/{id}, /call/v2/{api}/{id}
        parts = scope["path"].rstrip("/").split("/")
        at = max(i for i, p in enumerate(parts) if p in ("heartbeat", "stream", "call"))
        return parts[-1:] if parts[at] == "call" else parts[at + 1:at + 2]
    if route == "query":
        return parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_hash", [])
    try:
        value = json.loads(body).get("session_hash")  # a repeated key: the last, as Gradio reads it too
    except (ValueError, AttributeError, RecursionError):
        return []  # not a JSON object: Gradio refuses it itself, or it names no session
    return [value] if isinstance(value, str) else []


async def _refuse(send: Any, status: int, text: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(text)).encode())]})
    await send({"type": "http.response.body", "body": text})


class BindSessionsToLogins:
    """The middleware (see the module's doc)."""

    def __init__(self, app: Any, binding: SessionBinding | None = None) -> None:
        self.app = app
        self.binding = binding or SessionBinding()
        # read once (MEDIMG_AUTH_FILE is a file: not read again on every API request)
        self.on, self.passwords = auth.logins_on(), auth.credentials() is not None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        route = _route(scope) if scope.get("type") == "http" else None
        if route is None or not self.on:
            await self.app(scope, receive, send)
            return
        body, messages = await _read_body(receive) if route == "body" else (b"", [])
        if len(body) > _MAX_BODY:
            await _refuse(send, 413, b"Request body too large.")
            return
        login = login_of(scope)
        hashes = _hashes_in(route, scope, body)
        if not all(_HASH.fullmatch(h) for h in hashes):
            await _refuse(send, 400, b"Not a page session.")
            return
        # not signed in where password logins guard the app: checked, never remembered (Gradio refuses it anyway;
        # 20,001 such requests had pushed a signed-in page out of an unbounded-by-login table)
        bind = login != _ANONYMOUS or not self.passwords
        if not all([self.binding.allows(h, login, bind) for h in hashes]):
            log.warning("A request named a page session of another login (%s); refused", route)
            await _refuse(send, 403, b"This page session belongs to another login. Reload the page.")
            return

        async def replay() -> dict:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay if messages else receive, send)
