"""ASGI middleware: a bound on the size of every request body, and no deep links.

Gradio parses an event's JSON body whole, then keeps each input value in the caller's session state (one per
session hash, up to 10,000 sessions) before any check of the component runs. Without a bound, one client could send
megabytes as the value of any input of any event (a number, a text box, a file's name; every event is callable by
``fn_index``) and the server would keep them: 5 requests of 20 MB each kept 150 MB. File uploads have their own
bound (``launch(max_file_size=...)``, ``MEDIMG_MAX_UPLOAD_MB``) per file part, and their whole body one of its own
(:data:`MAX_UPLOAD_BODY_BYTES`); any other body over :data:`MAX_BODY_BYTES` is refused with HTTP 413 before it is
parsed. Only Gradio's upload route counts as an upload: an event called by a path that ends in ``/upload`` too
(``/gradio_api/call/upload``) passed uncapped, parsed whole before any login check. The largest body the app's own page sends is a feedback form (a
4,000-character comment and the prediction's JSON): a few kilobytes.

An input file named by a URL (``{"path": "https://..."}``; the page never sends one) is refused with HTTP 400: Gradio
would download it into its cache under the name in the URL, where no upload handler sees it as a raw upload, so the
file would stay for the cache's age, servable, instead of being cleaned and deleted by its request.

Gradio's ``GET /gradio_api/deep_link?session_hash=...`` writes the caller's session values (whatever JSON the client
sent as inputs, file names included) to a ``deep_links`` folder of the upload cache that nothing ever prunes, and
serves it back; the app offers no deep link, so the route answers 404.
"""

from __future__ import annotations

import json
from typing import Any

from ..imaging.decode import MAX_BYTES

#: Largest request body accepted outside file uploads.
MAX_BODY_BYTES = 256 * 1024
#: Largest upload request body: one file of the upload limit and its multipart framing. Gradio's own
#: ``max_file_size`` bounds each file part only: a request of 1,000 such parts, or a text part (kept in memory, with
#: no bound), would pass it.
MAX_UPLOAD_BODY_BYTES = MAX_BYTES + 1024 * 1024


def is_upload(scope: dict) -> bool:
    """Whether a request is a file upload to Gradio's upload route (``POST <root>/gradio_api/upload``) and nothing
    else: an event named by a path that merely ends in ``/upload`` (``/gradio_api/call/upload``) is a JSON body."""
    return (scope.get("type") == "http" and scope.get("method") == "POST"
            and scope.get("path", "").rstrip("/").endswith("/gradio_api/upload"))


async def _refuse(send: Any, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"x-content-type-options", b"nosniff"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _too_large(send: Any) -> None:
    await _refuse(send, 413, f"Request body over {MAX_BODY_BYTES // 1024} KB: refused (upload files through the "
                             "upload route).")


async def _upload_too_large(send: Any) -> None:
    await _refuse(send, 413, f"Upload over {MAX_BYTES / 2**20:.0f} MB (MEDIMG_MAX_UPLOAD_MB): refused; upload one "
                             "file at a time.")


def _content_length(scope: dict) -> bytes | None:
    return next((v for k, v in scope.get("headers", []) if k.lower() == b"content-length"), None)


def names_remote_file(body: bytes) -> bool:
    """Whether a JSON body holds an input file given by URL: an object whose ``path`` is an http(s) address (Gradio
    downloads those). Not JSON, or nested too deep to parse: False (Gradio refuses such a body itself)."""
    try:  # no byte-level shortcut: JSON may spell the scheme with escapes ("\u0068ttps://")
        todo = [json.loads(body)]
    except (ValueError, RecursionError):
        return False
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            path = item.get("path")
            if isinstance(path, str) and path.strip().lower().startswith(("http://", "https://")):
                return True
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return False


class RequestSizeLimit:
    """Refuses (413) a request body over :data:`MAX_BODY_BYTES` unless it is a file upload (:func:`is_upload`), and
    an upload body over :data:`MAX_UPLOAD_BODY_BYTES`; a JSON body is read here, at most that many bytes, and handed
    on unchanged unless it names an input file by URL (refused, 400); an upload streams through, counted. Refuses
    (404) Gradio's deep-link route."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and scope.get("path", "").rstrip("/").endswith("/deep_link"):
            await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"Not found"})
            return
        if is_upload(scope):
            await self._upload(scope, receive, send)
            return
        if scope.get("type") != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            await _too_large(send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message.get("type") != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > MAX_BODY_BYTES:
                await _too_large(send)
                return
        if names_remote_file(b"".join(chunks)):
            await _refuse(send, 400, "An input file given by URL is refused: upload the file itself.")
            return
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _upload(self, scope: dict, receive: Any, send: Any) -> None:
        """An upload: refused at once by its declared length, else counted as it streams; past the bound the route
        is told the client went away (it stops reading) and the client gets the 413, nothing of the route's."""
        length = _content_length(scope)
        if length is not None and (not length.isdigit() or int(length) > MAX_UPLOAD_BODY_BYTES):
            await _upload_too_large(send)
            return
        seen, refused, started = 0, False, False

        async def counted() -> dict:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > MAX_UPLOAD_BODY_BYTES:
                    refused = True
                    if not started:  # a route that already answered is only told the client went away
                        await _upload_too_large(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: dict) -> None:
            nonlocal started
            if not refused:
                started = started or message.get("type") == "http.response.start"
                await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:  # the route failing on the cut body: the 413 is already sent
            if not refused:
                raise
