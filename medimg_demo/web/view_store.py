"""The analysed views of every page, kept on the server within one memory budget.

A view holds the scan's pixels, its modality values and the heatmap, so that the viewer can redraw (window, opacity,
zoom) and the report can describe the result without decoding again: about 3 MB for a 512 px CT, 35-55 MB for an
image decoded at 2048 px. Kept in each page's ``gr.State``, a view lived as long as Gradio kept the page (up to
10,000 pages): a client analysing 2048 px images in new pages added 50-60 MB of memory per page, without bound.
Here the page's state holds a :class:`ViewKey`; the views live in one least-recently-used store of at most
``MEDIMG_VIEW_BUDGET_MB`` (default 512 MB), and a view unused for ``MEDIMG_FILE_MAX_AGE_S`` goes too (a scan's
pixels are not kept in memory after the page has left them; a redraw would publish its pictures again); a page whose
view was dropped is asked to analyse again.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .. import settings
from .analysis import View
from .outputs import MAX_AGE_S

#: Memory all pages' views may hold together; the least recently used are dropped beyond it (the newest is kept).
BUDGET_BYTES = int(settings.number("MEDIMG_VIEW_BUDGET_MB", 512, "megabytes of kept views") * 1e6)
DROPPED = (f"This result is no longer kept on the server (results go after {MAX_AGE_S / 60:.0f} minutes unused, or "
           "sooner when many scans are analysed): press Analyse again.")

_now = time.monotonic  # the store's clock (a test replaces it)
#: token -> (view, its bytes, when it was last used, by time.monotonic())
_views: OrderedDict[str, tuple[View, int, float]] = OrderedDict()
_lock = threading.Lock()
_total = 0


@dataclass(frozen=True)
class ViewKey:
    """What a page's state holds after an analysis: the key of its view in the store (no pixels)."""

    token: str


def _nbytes(view: View) -> int:
    return sum(a.nbytes for a in (view.pixels, view.values, view.heatmap) if a is not None)


def _drop_unused(now: float, max_age_s: float) -> int:
    """With the lock held: drop the views unused for ``max_age_s`` seconds (the oldest-used come first)."""
    global _total
    gone = 0
    while _views:
        token, (_, size, used) = next(iter(_views.items()))
        if now - used <= max_age_s:
            break
        del _views[token]
        _total -= size
        gone += 1
    return gone


def expire(max_age_s: float = MAX_AGE_S) -> int:
    """Drop the views unused for ``max_age_s`` seconds; returns how many (the reaper calls this)."""
    with _lock:
        return _drop_unused(_now(), max_age_s)


def keep(view: View) -> ViewKey:
    """Store ``view`` (dropping views unused too long and the least recently used beyond the budget); its key."""
    global _total
    key, size = ViewKey(secrets.token_hex(16)), _nbytes(view)
    with _lock:
        now = _now()  # read under the lock: the store stays ordered by last use
        _drop_unused(now, MAX_AGE_S)
        _views[key.token] = (view, size, now)
        _total += size
        while _total > BUDGET_BYTES and len(_views) > 1:
            _, (_, old, _) = _views.popitem(last=False)
            _total -= old
    return key


def lookup(state: Any) -> View | None:  # noqa: ANN401 - whatever the page's state holds
    """The view a page's state names (a :class:`View` given in-process is itself), now the most recently used;
    None for a view dropped (unused too long, or beyond the budget) or anything else."""
    if isinstance(state, View):
        return state
    if not isinstance(state, ViewKey):
        return None
    with _lock:
        now = _now()
        _drop_unused(now, MAX_AGE_S)
        entry = _views.get(state.token)
        if entry is not None:
            _views[state.token] = (entry[0], entry[1], now)
            _views.move_to_end(state.token)
    return entry[0] if entry else None


def dropped(state: Any) -> bool:  # noqa: ANN401
    """Whether the page analysed a scan whose view the store has since dropped."""
    return isinstance(state, ViewKey) and lookup(state) is None
