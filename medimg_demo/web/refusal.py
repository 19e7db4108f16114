"""A refused request as the page shows it: Gradio prints a traceback to the server's log for every ``gr.Error``
unless told not to (about 25 lines a refusal, message included: a client repeating a refused call filled the log).
A refusal caused by the server's side (a model file missing or altered, a data folder, a report or export that could
not be written) is logged in one line, so that an operator still sees a broken deployment."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr

from ..errors import AccessError, InputError, OptionError, StoreError

log = logging.getLogger(__name__)

#: What a user's own request causes (a file, a choice, a login); the feedback store logs its own failures.
_USERS_OWN = (InputError, AccessError, OptionError, StoreError)


def refusal(message: str, cause: BaseException | None = None) -> gr.Error:
    """A ``gr.Error`` with ``message`` for the user, not printed to the log with a traceback; ``cause``, where it is
    the server's fault, is logged in one line (its type and message: no patient data reaches these messages)."""
    if cause is not None and not isinstance(cause, _USERS_OWN):
        log.warning("A request failed on the server's side (%s): %s", type(cause).__name__, message)
    return gr.Error(message, print_exception=False)


def _quiet(preprocess: Callable[..., Any], kind: str) -> Callable[..., Any]:
    @functools.wraps(preprocess)
    def checked(self: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        try:
            return preprocess(self, *args, **kwargs)
        except gr.Error as exc:
            if not exc.print_exception:
                raise
            log.info("A request sent a value the page does not offer (%s); refused", kind)
            raise gr.Error(exc.message, duration=exc.duration, title=exc.title, print_exception=False) from None
    return checked


def quiet_component_refusals(blocks: gr.Blocks) -> int:
    """The kinds of component in ``blocks`` refuse a value the page never sends (a choice not offered, forged by an
    API client) as a refusal: one line in the log naming the kind, not Gradio's 25-line traceback with the value in it
    (a client could write 256 KB of its choosing to the log per request). Done on the classes, not the instances: a
    page's component given new choices is a new instance of its class. Returns how many classes."""
    kinds = {type(b) for b in blocks.blocks.values() if isinstance(b, gr.components.Component)}
    n = 0
    for kind in kinds:
        if not getattr(kind.preprocess, "_medimg_quiet", False):
            kind.preprocess = _quiet(kind.preprocess, kind.__name__)  # type: ignore[method-assign]
            kind.preprocess._medimg_quiet = True  # type: ignore[attr-defined]
            n += 1
    return n
