"""ASGI middleware: a reader's share of the disk that raw uploads take.

A raw upload lies on disk, named as uploaded, until the request that uses it deletes it, or for
``MEDIMG_RAW_UPLOAD_TTL_S`` (120 s) when none does (``uploads.expire_raw_uploads``). Each upload is bounded
(``MEDIMG_MAX_UPLOAD_MB``), but their number was not: one login sending 100 MB files as fast as the route took them
filled the disk by gigabytes a minute (``benchmarks/upload_share.py``), and a full disk stops the feedback store and
every other reader's upload. Here a reader may send at most :data:`MB_PER_READER` megabytes to the upload route
within that life (by each request's declared length; a request that declares none, or sends its body in chunks
(``Transfer-Encoding``, which the server follows over a declared length), counts as the largest allowed);
past it the upload is refused with HTTP 429 and a message, before a byte of it is stored.

A reader is a password login, else the Hugging Face account signed in; readers with neither (no logins, or signed
out) share one allowance: without logins any client is anyone.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from .. import settings
from .request_limits import MAX_UPLOAD_BODY_BYTES, _content_length, _refuse, is_upload
from .session_binding import login_of
from .uploads import RAW_UPLOAD_TTL_S

#: Megabytes one reader may upload within a raw upload's life (MEDIMG_RAW_UPLOAD_TTL_S); 0: no limit.
MB_PER_READER = settings.number("MEDIMG_UPLOAD_MB_PER_READER", 2048,
                                "megabytes a reader may upload in two minutes; 0: no limit")
TOO_MUCH = ("You have uploaded {mb:.0f} MB in the last {s:.0f} s, your share for now: wait a minute, then upload "
            "again (each upload is analysed as it arrives, so one scan at a time is enough).")

_now = time.monotonic  # the share's clock (a test replaces it)


class UploadShare:
    """The middleware (see the module's doc)."""

    def __init__(self, app: Any, mb_per_reader: float | None = None, window_s: float | None = None) -> None:  # noqa: ANN401
        self.app = app
        self.budget = int((MB_PER_READER if mb_per_reader is None else mb_per_reader) * 1e6)
        self.window_s = RAW_UPLOAD_TTL_S if window_s is None else window_s
        self._sent: dict[str, deque[tuple[float, int]]] = {}  # reader -> (when, bytes) of its uploads in the window
        self._total: dict[str, int] = {}
        self._lock = threading.Lock()

    def charge(self, reader: str, nbytes: int) -> int | None:
        """Count ``nbytes`` against ``reader`` and return None, or return what the reader has sent in the window
        (nothing counted) when ``nbytes`` more would pass the budget."""
        now = _now()
        with self._lock:
            for who in list(self._sent):  # readers' old uploads leave the window (and idle readers the table)
                sent = self._sent[who]
                while sent and now - sent[0][0] > self.window_s:
                    self._total[who] -= sent.popleft()[1]
                if not sent:
                    del self._sent[who], self._total[who]
            total = self._total.get(reader, 0)
            if total + nbytes > self.budget:
                return total
            self._sent.setdefault(reader, deque()).append((now, nbytes))
            self._total[reader] = total + nbytes
            return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:  # noqa: ANN401
        if not is_upload(scope) or self.budget <= 0:
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        chunked = any(k.lower() == b"transfer-encoding" for k, _ in scope.get("headers", []))
        # with Transfer-Encoding the server reads the body by its chunks, whatever length is declared beside them
        nbytes = int(length) if length is not None and length.isdigit() and not chunked else MAX_UPLOAD_BODY_BYTES
        sent = self.charge(login_of(scope), nbytes)
        if sent is not None:
            await _refuse(send, 429, TOO_MUCH.format(mb=sent / 1e6, s=self.window_s))
            return
        await self.app(scope, receive, send)
