"""A refused request as the page shows it: Gradio prints a traceback to the server's log for every ``gr.Error``
unless told not to (about 25 lines a refusal, message included: a client repeating a refused call filled the log)."""

from __future__ import annotations

import gradio as gr


def refusal(message: str) -> gr.Error:
    """A ``gr.Error`` with ``message`` for the user, not printed to the log (it is an answer, not a fault)."""
    return gr.Error(message, print_exception=False)
