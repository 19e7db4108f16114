"""Numbers the deployer sets in the environment (limits, budgets, workers), each read once with a clear error.

A value that was no number (``MEDIMG_MAX_UPLOAD_MB=abc``) ended the app's start in a traceback from deep inside an
import (``ValueError: could not convert string to float``); one below any sense (a negative upload limit, ``nan``)
was taken as it was. :func:`number` names the variable, what it sets and what to do; the app's start prints such an
error, and every other error this package raises on purpose, in one line (:func:`one_line_start_errors`).
"""

from __future__ import annotations

import math
import os
import sys
from types import TracebackType

from .errors import MedimgError, SettingError


def number(name: str, default: float, what: str, *, low: float = 0.0, integer: bool = False) -> float:
    """The environment variable ``name`` as a finite number of at least ``low`` (a whole one with ``integer``),
    ``default`` when unset or empty; anything else is a :class:`SettingError` that says ``what`` it sets."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < low or (integer and not value.is_integer()):
        kind = "a whole number" if integer else "a number"
        shown = f"{default:,.0f}" if float(default).is_integer() else f"{default:g}"
        raise SettingError(f"{name} must be {kind} of at least {low:g} ({what}); it is {raw[:40]!r}. Set it so, or "
                           f"unset it for the default, {shown}.")
    return int(value) if integer else value


def whole(name: str, default: int, what: str, *, low: int = 0) -> int:
    """:func:`number` for a count (workers, places in a queue, threads)."""
    return int(number(name, default, what, low=low, integer=True))


def one_line_start_errors() -> None:
    """An error this package raises on purpose that ends the process (a setting, a model's config, a served folder
    that must not be, at start) is printed in one line on stderr, not as a traceback: the message says what to
    change."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, MedimgError):
            sys.stderr.write(f"medimg_demo stopped: {exc}\n")
            return
        previous(kind, exc, tb)

    sys.excepthook = hook
