"""A typed session id or pseudonym is shown as text in the app's Markdown, never as a link, image or HTML."""

from __future__ import annotations

import pytest

from medimg_demo.web.markdown_text import code_span


@pytest.mark.parametrize("typed", ["reader07", "x` ![](https://attacker.example/b.png) `", "``` <img src=x onerror=alert(1)>",
                                   "a`b``c", "line\n# heading"])
def test_a_typed_id_stays_inside_its_code_span(typed: str) -> None:
    import markdown_it

    html = markdown_it.MarkdownIt("commonmark").renderInline(f"session {code_span(typed)}, then text")
    assert html.startswith("session <code>") and html.endswith("</code>, then text"), html
    assert html.count("<code>") == 1 and "<img" not in html and "<a " not in html, html
