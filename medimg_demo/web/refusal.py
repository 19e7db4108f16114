"""A refused request as the page shows it: Gradio prints a traceback to the server's log for every ``gr.Error``
unless told not to (about 25 lines a refusal, message included: a client repeating a refused call filled the log).
A refusal caused by the server's side (a model file missing or altered, a data folder, a report or export that could
not be written) is logged in one line, so that an operator still sees a broken deployment."""

from __future__ import annotations

import logging

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
