"""ASGI middleware: the uploaded file's own name never reaches disk.

Gradio's upload route stores each file of a ``multipart/form-data`` request under the name the browser sends,
before any handler of ours runs; a scan's name is often a patient's (``DOE_JANE_PID998877.dcm``). This middleware
rewrites the ``filename`` of every part of ``POST .../upload`` requests as the body streams in: the name is
replaced by as many ``u`` characters (its image extension kept), so the body keeps its length and nothing else
changes.
"""

from __future__ import annotations

import os
import re
from typing import Any

from python_multipart.multipart import parse_options_header

from .request_limits import is_upload

#: Extensions kept on the masked name (the decoder sniffs content; the extension only helps the UI).
SAFE_EXTENSIONS = (b".png", b".jpg", b".jpeg", b".dcm")
#: Bytes held back at the end of a chunk that has no line break nearby: a part header line is far shorter.
HOLD = 8192
#: ``filename`` (also ``filename*``, ``filename*0``; spaces before ``=`` as parsers allow) and its value: a quoted
#: string with backslash escapes, or a bare token up to ``;`` or the end of the line.
_NAME = re.compile(rb'(filename[^=;\r\n"]*=[ \t]*)("(?:[^"\\\r\n]|\\.)*"|[^;\r\n]*)', re.IGNORECASE)


def _mask(match: re.Match[bytes]) -> bytes:
    value = match.group(2)
    quoted = value.startswith(b'"') and value.endswith(b'"') and len(value) >= 2
    inner = value[1:-1] if quoted else value
    ext = os.path.splitext(inner)[1].lower()
    keep = ext if ext in SAFE_EXTENSIONS and len(ext) < len(inner) else b""
    masked = b"u" * (len(inner) - len(keep)) + keep
    return match.group(1) + (b'"' + masked + b'"' if quoted else masked)


def mask_filenames(chunk: bytes) -> bytes:
    """Every ``filename=`` / ``filename*=`` value in ``chunk`` replaced by a same-length neutral name."""
    return _NAME.sub(_mask, chunk)


def _split(body: bytes) -> tuple[bytes, bytes]:
    """(what can be passed on now, what to hold back): never cut inside a line that may hold a part header."""
    cut = body.rfind(b"\r\n")
    if cut == -1 or len(body) - cut > HOLD:
        cut = max(0, len(body) - HOLD)
    else:
        cut += 2
    return body[:cut], body[cut:]


def _boundary(scope: dict) -> bytes | None:
    """The multipart boundary of the request's first Content-Type, read by the parser Gradio's upload route uses
    (a pattern of our own read ``xboundary=z; boundary=real`` as ``z``, and the names passed unmasked), or None."""
    for key, value in scope.get("headers", []):
        if key.lower() == b"content-type":
            return parse_options_header(value)[1].get(b"boundary") or None
    return None


class _PartHeaders:
    """Rewrites names only inside part headers (between a boundary line and the blank line after it), so bytes
    of the uploaded file itself are never touched. Fed with text that ends at a line break (see ``_split``)."""

    def __init__(self, boundary: bytes) -> None:
        self.delimiter = b"--" + boundary
        self.in_headers = False

    def feed(self, data: bytes) -> bytes:
        out, pos = [], 0
        while pos < len(data):
            if self.in_headers:
                nl = data.find(b"\r\n", pos)
                end = len(data) if nl == -1 else nl + 2
                line = data[pos:end]
                if line == b"\r\n":
                    self.in_headers = False
                out.append(mask_filenames(line))
                pos = end
                continue
            at = data.find(self.delimiter, pos)
            if at == -1:
                out.append(data[pos:])
                break
            nl = data.find(b"\r\n", at)
            end = len(data) if nl == -1 else nl + 2
            out.append(data[pos:end])  # payload up to and including the boundary line
            self.in_headers = True
            pos = end
        return b"".join(out)


class AnonymousUploadNames:
    """Masks the file names of multipart upload requests (see the module docstring)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if not is_upload(scope):
            await self.app(scope, receive, send)
            return
        held = b""
        boundary = _boundary(scope)
        parts = _PartHeaders(boundary) if boundary else None

        async def masked_receive() -> dict:
            nonlocal held
            message = await receive()
            if message.get("type") != "http.request":
                return message
            body = held + message.get("body", b"")
            if message.get("more_body", False):
                out, held = _split(body)
            else:
                out, held = body, b""
            return {**message, "body": parts.feed(out) if parts else mask_filenames(out)}

        await self.app(scope, masked_receive, send)
