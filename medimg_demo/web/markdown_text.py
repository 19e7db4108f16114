"""Text a user typed (a session id, a reader's pseudonym), shown inside the app's Markdown as text and nothing else."""
from __future__ import annotations

import re


def code_span(text: str) -> str:
    """``text`` as a Markdown code span: its fence is one backtick longer than any run of backticks in it, so a typed
    id cannot close the span and add a link, an image or HTML that the reader's browser would load."""
    text = " ".join(str(text).split())  # no line breaks: a span is one line
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or longest else ""
    return f"{fence}{pad}{text}{pad}{fence}"
