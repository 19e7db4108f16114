"""Fonts and paragraph styles of the report. DejaVu Sans (bundled with matplotlib, so nothing is downloaded) is
embedded because reportlab's standard fonts cover Latin-1 only, and pathway and warning texts may hold other
characters (dashes, >=, accented names)."""

from __future__ import annotations

import threading
from pathlib import Path

from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.styles import ParagraphStyle
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

FONT = "DejaVuSans"
FONT_BOLD = "DejaVuSans-Bold"
_LOCK = threading.Lock()


def register_fonts() -> None:
    """Register the embedded fonts with reportlab once per process."""
    with _LOCK:
        if FONT in pdfmetrics.getRegisteredFontNames():
            return
        import matplotlib

        folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        pdfmetrics.registerFont(TTFont(FONT, str(folder / "DejaVuSans.ttf")))
        pdfmetrics.registerFont(TTFont(FONT_BOLD, str(folder / "DejaVuSans-Bold.ttf")))
        pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=FONT_BOLD, italic=FONT, boldItalic=FONT_BOLD)


def _style(name: str, size: float, **kw: object) -> ParagraphStyle:
    return ParagraphStyle(name, fontName=kw.pop("fontName", FONT), fontSize=size, leading=size * 1.3, **kw)


STYLES: dict[str, ParagraphStyle] = {
    "h1": _style("h1", 15, fontName=FONT_BOLD, spaceAfter=3),
    "h2": _style("h2", 10.5, fontName=FONT_BOLD, spaceBefore=7, spaceAfter=2, textColor=colors.HexColor("#1f3b57")),
    "body": _style("body", 9),
    "small": _style("small", 8),
    "caption": _style("caption", 7.5, textColor=colors.HexColor("#444444"), spaceBefore=1),
    "figure": _style("figure", 7.5, textColor=colors.HexColor("#444444"), spaceBefore=2, alignment=TA_CENTER),
    "warn": _style("warn", 9, textColor=colors.HexColor("#8a4b00")),
    "notice": _style("notice", 10, textColor=colors.HexColor("#b00020")),
    "bullet": _style("bullet", 8.5, leftIndent=10, bulletIndent=2),
}
