"""A probability is never shown as a certainty: neither "100%" nor "0%" on a screen, neither in a report."""

from __future__ import annotations

import pytest

from medimg_demo.probability_text import capped, two_decimals, whole_percent


@pytest.mark.parametrize(("p", "shown"), [(0.0, 0.01), (0.004, 0.01), (0.01, 0.01), (0.37, 0.37), (0.995, 0.99),
                                          (1.0, 0.99)])
def test_screens_show_one_to_ninety_nine_percent(p: float, shown: float) -> None:
    assert capped(p) == shown
    assert f"{round(capped(p) * 100)}%" not in ("0%", "100%")  # as Gradio's Label rounds


def test_text_and_reports_never_read_certain() -> None:
    assert two_decimals(0.999) == "0.99" and two_decimals(0.001) == "0.01" and two_decimals(0.5) == "0.50"
    assert whole_percent(0.999) == "99%" and whole_percent(0.001) == "1%" and whole_percent(0.5) == "50%"
    assert whole_percent(0.9999) == "99%" and whole_percent(0.0001) == "1%" and whole_percent(0.254) == "25%"
    assert whole_percent(0.125) == "13%"  # halves up, as Gradio's Label (Math.round); Python's round gave "12%"
