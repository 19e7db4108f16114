"""The analysed views of every page, kept on the server within one memory budget.

A view holds the scan's pixels, its modality values and the heatmap, so that the viewer can redraw (window, opacity,
zoom) and the report can describe the result without decoding again: about 3 MB for a 512 px CT, 35-55 MB for an
image decoded at 2048 px. Kept in each page's ``gr.State``, a view lived as long as Gradio kept the page (up to
10,000 pages): a client analysing 2048 px images in new pages added 50-60 MB of memory per page, without bound.
Here the page's state holds a :class:`ViewKey`; the views live in one least-recently-used store of at most
``MEDIMG_VIEW_BUDGET_MB`` (default 512 MB); a page whose view was dropped is asked to analyse again.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .analysis import View

#: Memory all pages' views may hold together; the least recently used are dropped beyond it (the newest is kept).
BUDGET_BYTES = int(float(os.environ.get("MEDIMG_VIEW_BUDGET_MB", "512")) * 1e6)
DROPPED = "This result is no longer kept on the server (many scans were analysed since): press Analyse again."

_views: OrderedDict[str, tuple[View, int]] = OrderedDict()
_lock = threading.Lock()
_total = 0


@dataclass(frozen=True)
class ViewKey:
    """What a page's state holds after an analysis: the key of its view in the store (no pixels)."""

    token: str


def _nbytes(view: View) -> int:
    return sum(a.nbytes for a in (view.pixels, view.values, view.heatmap) if a is not None)


def keep(view: View) -> ViewKey:
    """Store ``view`` (dropping the least recently used beyond the budget) and return its key."""
    global _total
    key, size = ViewKey(secrets.token_hex(16)), _nbytes(view)
    with _lock:
        _views[key.token] = (view, size)
        _total += size
        while _total > BUDGET_BYTES and len(_views) > 1:
            _, (_, old) = _views.popitem(last=False)
            _total -= old
    return key


def lookup(state: Any) -> View | None:  # noqa: ANN401 - whatever the page's state holds
    """The view a page's state names (a :class:`View` given in-process is itself), now the most recently used;
    None for a dropped view or anything else."""
    if isinstance(state, View):
        return state
    if not isinstance(state, ViewKey):
        return None
    with _lock:
        entry = _views.get(state.token)
        if entry is not None:
            _views.move_to_end(state.token)
    return entry[0] if entry else None


def dropped(state: Any) -> bool:  # noqa: ANN401
    """Whether the page analysed a scan whose view the store has since dropped."""
    return isinstance(state, ViewKey) and lookup(state) is None
