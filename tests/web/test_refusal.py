"""A refusal goes to the page without a traceback in the log; one the server caused is logged in one line."""

from __future__ import annotations

import logging

import gradio as gr
import pytest

from medimg_demo.errors import InputError, ModelError
from medimg_demo.web.refusal import refusal


def test_a_users_refusal_is_not_logged_a_server_fault_is_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="medimg_demo.web.refusal"):
        err = refusal("The file is empty.", InputError("The file is empty."))
        assert not caplog.records and err.print_exception is False
        refusal("The model file is missing; ask the deployer.", ModelError("missing"))
        refusal("The export could not be written; try again.", OSError("disk"))
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "A request failed on the server's side (ModelError)", "A request failed on the server's side (OSError)"]


def test_a_value_the_page_never_offers_is_refused_without_a_traceback_in_the_log(caplog) -> None:
    """Gradio's own check of a forged choice (an API client's model "SMITH_JOHN") prints a traceback with the value
    in it; the app's kinds of component refuse it as the page's other refusals: the message for the client, one line
    in the log naming the kind and not the value; a component given new choices (a new instance) too."""
    import app

    gradios = getattr(gr.Dropdown.preprocess, "__wrapped__", gr.Dropdown.preprocess)
    with pytest.raises(gr.Error) as raw:
        gradios(gr.Dropdown(choices=["a", "b"]), "SMITH_JOHN")
    assert raw.value.print_exception  # Gradio's default: printed with its traceback
    dropdowns = [b for b in app.demo.blocks.values() if isinstance(b, gr.Dropdown) and not b.allow_custom_value]
    assert dropdowns
    given_new_choices = type(dropdowns[0])(choices=["x", "y"])  # how Gradio keeps a page's updated component
    with caplog.at_level(logging.INFO, logger="medimg_demo.web.refusal"):
        for dropdown in [*dropdowns, given_new_choices]:
            with pytest.raises(gr.Error, match="not in the list of choices") as refused:
                dropdown.preprocess("SMITH_JOHN")
            assert not refused.value.print_exception
    assert "Dropdown" in caplog.text and "SMITH" not in caplog.text
    assert given_new_choices.preprocess("y") == "y"  # an offered value goes through
