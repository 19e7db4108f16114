"""One upload or analysis at a time per reader, so that one reader cannot make the others wait.

Uploads decode in the decode server's children, at most ``MEDIMG_DECODE_WORKERS`` at once (``imaging.isolated``),
and each Gradio event runs at most ``MEDIMG_CONCURRENCY`` calls at once, first come first served. A scan that is
slow to decode within every limit (an 8000x8000 progressive JPEG in a DICOM: 13 s) sent six times by one login held
both decode slots and the Analyse queue: another reader's 2-second analysis took 41 s. Here a reader (a login; a
page without logins, or a visitor not signed in to Hugging Face) has at most ``MEDIMG_JOBS_PER_READER`` (default 1)
uploads, analyses, reports or de-identified copies in the works at a time; another is refused at once with a message
(which frees its place in the queue), so one reader holds at most one decode slot and one place in each queue.
Several logins together can still fill the slots; without logins any client can open more pages.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .. import settings
from ..errors import InputError

#: Uploads, analyses, reports and de-identified copies one reader may have in the works at once.
JOBS_PER_READER = settings.whole("MEDIMG_JOBS_PER_READER", 1, "jobs one reader may have in the works", low=1)
BUSY = ("Your previous upload or analysis is still being worked on (on another tab too): wait until it has "
        "finished, then try again.")

_held: dict[str, int] = {}
_lock = threading.Lock()


class Busy(InputError):
    """The reader already has :data:`JOBS_PER_READER` jobs in the works."""


def reader_key(request: Any | None, profile: Any | None) -> str:
    """Who asks: the password login, else the Hugging Face account, else the page (Gradio's session hash); "" for
    a call from no page (the command line, a test): not limited."""
    user = getattr(request, "username", None)
    if user:
        return f"login:{user}"
    name = getattr(profile, "username", None) or (profile.get("preferred_username") if isinstance(profile, dict) else None)
    if name:
        return f"hf:{name}"
    page = getattr(request, "session_hash", None)
    return f"page:{page}" if page else ""


@contextmanager
def one_job(request: Any | None, profile: Any | None = None, limit: int | None = None) -> Iterator[None]:
    """Hold one of the reader's job places for the block; raises :class:`Busy` (an ``InputError``: the page says
    why) when all are taken."""
    key = reader_key(request, profile)
    limit = JOBS_PER_READER if limit is None else limit
    if not key:
        yield
        return
    with _lock:
        if _held.get(key, 0) >= limit:
            raise Busy(BUSY)
        _held[key] = _held.get(key, 0) + 1
    try:
        yield
    finally:
        with _lock:
            _held[key] -= 1
            if not _held[key]:
                del _held[key]


def one_at_a_time(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a Gradio handler that takes a job place (:func:`one_job`), so that ``queue_share`` refuses a second one
    of a reader already when it asks to join the queue; the handler itself is returned unchanged."""
    handler._medimg_one_job = True  # type: ignore[attr-defined]
    return handler


def is_one_job(handler: Any) -> bool:  # noqa: ANN401
    """Whether ``handler`` was marked by :func:`one_at_a_time`."""
    return bool(getattr(handler, "_medimg_one_job", False))


def busy(key: str, limit: int | None = None) -> bool:
    """Whether the reader ``key`` (as :func:`reader_key` names it) holds all its job places now."""
    with _lock:
        return _held.get(key, 0) >= (JOBS_PER_READER if limit is None else limit)


def in_the_works() -> int:
    """Jobs held now, all readers together (for tests and diagnostics)."""
    with _lock:
        return sum(_held.values())
