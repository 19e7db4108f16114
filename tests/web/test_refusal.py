"""A refusal goes to the page without a traceback in the log; one the server caused is logged in one line."""

from __future__ import annotations

import logging

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
