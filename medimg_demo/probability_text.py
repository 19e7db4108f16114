"""How a calibrated probability is shown to people: never as a certainty.

Gradio's Label rounds to whole percent and captions printed two decimals, so 0.995 read "100%" or "1.00": on test,
609 of brain v5's 646 calls and 100 of lung v2's 125 did, 8 and 1 of them wrong. Likewise 0.004 read "0%", as if a
class had been ruled out. Screens and reports show 1% to 99% (0.01 to 0.99) in whole percent: the report had printed
"> 99.9%" and "99.7%" beside a screen's "99%", a precision that calibration errors of 3 to 8 points on the test split
do not have. The JSON, the feedback store and batch tables keep the calibrated values.
"""

from __future__ import annotations

import math

#: Lowest and highest probability a screen shows.
SHOWN_MIN, SHOWN_MAX = 0.01, 0.99


def capped(p: float) -> float:
    """``p`` as a screen shows it (from :data:`SHOWN_MIN` to :data:`SHOWN_MAX`)."""
    return min(max(float(p), SHOWN_MIN), SHOWN_MAX)


def two_decimals(p: float) -> str:
    """``p`` for a caption or a line of text: "0.01" to "0.99", never "0.00" or "1.00"."""
    return f"{capped(p):.2f}"


def whole_percent(p: float) -> str:
    """``p`` as the screens' charts show it, for a line beside them and in a report: "1%" to "99%"."""
    return f"{math.floor(capped(p) * 100 + 0.5)}%"  # halves up, as the browser's Math.round (Python's round: to even)

