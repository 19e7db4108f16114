"""The page's fonts: every font file the theme loads holds every printable ASCII letter, so a bold line is drawn in
one font (Gradio's SemiBold files hold 55-75 glyphs; bold text mixed their "A" and "B" with another font)."""

from __future__ import annotations

import re
import string
from pathlib import Path

import gradio as gr
import pytest

from medimg_demo.web.ui.common import FONTS, MONO_FONTS

TTFont = pytest.importorskip("fontTools.ttLib").TTFont  # fontTools comes with matplotlib
STATIC = Path(gr.__file__).parent / "templates" / "frontend"


def _files(fonts: list) -> list[Path]:  # noqa: ANN001
    """The woff2 files a font stack's Gradio fonts load (what their @font-face rules name)."""
    css = "\n".join(f.stylesheet()["css"] for f in fonts if isinstance(f, gr.themes.LocalFont))
    return [STATIC / url for url in re.findall(r"url\('([^']+\.woff2)'\)", css)]


def _missing(path: Path) -> str:
    cmap = TTFont(str(path)).getBestCmap()
    return "".join(c for c in string.ascii_letters + string.digits if ord(c) not in cmap)


def test_every_font_file_the_page_loads_holds_every_letter() -> None:
    ours = _files(FONTS) + _files(MONO_FONTS)
    assert len(ours) == 4 and all(p.is_file() for p in ours), ours
    assert {p.name: _missing(p) for p in ours} == {p.name: "" for p in ours}
    # what Gradio's default theme loads for bold: a subset without most letters (why the theme is ours)
    default = gr.themes.Default()
    semibold = [p for p in _files([*default._font, *default._font_mono]) if "SemiBold" in p.name]  # its font objects
    assert semibold and all(len(_missing(p)) > 50 for p in semibold)
