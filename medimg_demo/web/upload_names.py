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

#: Extensions kept on the masked name (the decoder sniffs content; the extension only helps the UI).
SAFE_EXTENSIONS = (b".png", b".jpg", b".jpeg", b".dcm")
#: Bytes held back at the end of a chunk that has no line break nearby: a part header line is far shorter.
HOLD = 8192
_NAME = re.compile(rb'(filename\*?=)("[^"\r\n]*"|[^;\r\n]*)', re.IGNORECASE)


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


class AnonymousUploadNames:
    """Masks the file names of multipart upload requests (see the module docstring)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if (scope.get("type") != "http" or scope.get("method") != "POST"
                or not scope.get("path", "").rstrip("/").endswith("/upload")):
            await self.app(scope, receive, send)
            return
        held = b""

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
            return {**message, "body": mask_filenames(out)}

        await self.app(scope, masked_receive, send)
