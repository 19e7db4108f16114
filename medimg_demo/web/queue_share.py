"""ASGI middleware: a reader's share of Gradio's queue, judged when an event asks to join it.

Gradio's queue holds at most ``MEDIMG_QUEUE_MAX`` (64) waiting events for the whole app, first come first served,
and ``fair_share`` refuses a reader's second upload or analysis only when it leaves the queue. So, in a live run,
one login joining the quick, ungated ``performance`` event 30 times a second kept the queue full, and another
login's Analyse got "queue full" 69 times in 76 (``qfull2.py``); two logins each joining several slow analyses kept
them waiting in line, and each time one's job ended its next one started ahead of a third reader's (26-41 s for a
0.15 s analysis). Here, before Gradio sees a ``queue/join``:

* a reader with :data:`PER_READER` events already waiting is refused (HTTP 429, the page shows why);
* an upload, analysis, report or de-identified copy (a handler marked by ``fair_share.one_at_a_time``) is refused
  while the same reader has one in the works or waiting, so it never waits in line to be refused.

A reader is as ``fair_share`` names one: a password login (Gradio keeps its name with each event), else the Hugging
Face account signed in (the sign-in session each event's request carries), else a page (its session hash). Keyed by
page, one Hugging Face account's pages had been as many readers here as it opened, each with its own share.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from .. import settings
from . import fair_share
from .session_binding import _MAX_BODY, _read_body, login_of

log = logging.getLogger(__name__)

#: Events one reader may have waiting in the queue at once (a page's own chain of events waits for one or two).
PER_READER = settings.whole("MEDIMG_QUEUE_PER_READER", 8, "places one reader may hold in the queue", low=1)
TOO_MANY = ("Too many of your requests are waiting ({n}); wait until they have finished, then try again.")


def _waiting(blocks: Any) -> list[Any]:  # noqa: ANN401 - Gradio's Blocks and Events
    """The events waiting in Gradio's queue (not those running)."""
    queues = getattr(getattr(blocks, "_queue", None), "event_queue_per_concurrency_id", None) or {}
    return [e for q in list(queues.values()) for e in list(getattr(q, "queue", []))]


def _reader(scope: dict | None, session_hash: str | None, username: str | None = None) -> str:
    """The reader ``fair_share.reader_key`` names for a request (its ASGI ``scope``) from a page."""
    if username:
        return f"login:{username}"
    who = login_of(scope) if isinstance(scope, dict) else ""
    return who if who.startswith(("login:", "hf:")) else f"page:{session_hash}"


def _event_reader(event: Any) -> str:  # noqa: ANN401 - Gradio's Event
    return _reader(getattr(getattr(event, "request", None), "scope", None), event.session_hash,
                   getattr(event, "username", None))


async def _refuse(send: Any, text: str) -> None:
    body = json.dumps({"detail": text}).encode()
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class QueueShare:
    """The middleware (see the module's doc)."""

    def __init__(self, app: Any, per_reader: int | None = None) -> None:  # noqa: ANN401
        self.app = app
        self.per_reader = PER_READER if per_reader is None else per_reader
        self._joining: dict[str, int] = {}  # joins judged and not yet answered by Gradio, per reader

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if not (scope.get("type") == "http" and scope.get("method") == "POST"
                and scope.get("path", "").rstrip("/").endswith("/gradio_api/queue/join")):
            await self.app(scope, receive, send)
            return
        body, messages = await _read_body(receive)

        async def replay() -> dict:
            return messages.pop(0) if messages else await receive()

        # judged and counted with no await between: joins sent all at once are counted while Gradio takes them
        counted, refused = ([], None) if len(body) > _MAX_BODY else self._judge(scope, body)
        if refused:
            log.info("A queue join was refused: %s", refused.split(";")[0])
            await _refuse(send, refused)
            return
        for key in counted:
            self._joining[key] = self._joining.get(key, 0) + 1
        try:
            await self.app(scope, replay, send)
        finally:
            for key in counted:
                self._joining[key] -= 1
                if not self._joining[key]:
                    del self._joining[key]

    def _judge(self, scope: dict, body: bytes) -> tuple[list[str], str | None]:
        """(what to count the join under while Gradio takes it: the reader, and for a job "job <reader>" too; why
        the join is refused, or None)."""
        try:
            asked = json.loads(body)
            fn_index, page = asked.get("fn_index"), asked.get("session_hash")
        except (ValueError, AttributeError, RecursionError):
            return [], None  # Gradio answers a body it cannot read itself
        blocks = getattr(scope.get("app"), "get_blocks", lambda: None)()
        if blocks is None or not isinstance(page, str):
            return [], None
        reader = _reader(scope, page)
        mine = [e for e in _waiting(blocks) if _event_reader(e) == reader]
        if len(mine) + self._joining.get(reader, 0) >= self.per_reader:
            return [], TOO_MANY.format(n=len(mine) + self._joining.get(reader, 0))
        fn = getattr(blocks, "fns", {}).get(fn_index) if isinstance(fn_index, int) else None
        if fn is not None and fair_share.is_one_job(fn.fn):
            if (fair_share.busy(reader) or any(fair_share.is_one_job(getattr(e.fn, "fn", None)) for e in mine)
                    or self._joining.get(f"job {reader}")):
                return [], fair_share.BUSY
            return [reader, f"job {reader}"], None
        return [reader], None
