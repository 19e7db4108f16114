"""Every event the server answers is listed in the README (a browser page's helper events are callable by any client
through Gradio's fn_index, so an undocumented one would be hidden attack surface), and the public API is exactly
the documented list."""

from __future__ import annotations

import re
from pathlib import Path

import app

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n## ", start)
    return README[start:end if end > 0 else None]


def test_every_server_event_is_documented_in_the_readme() -> None:
    served = {b.fn.__name__ for b in app.demo.fns.values() if b.fn is not None}
    table = _section("### Every event the server answers")
    documented = {name for line in table.splitlines() if line.startswith("| `")
                  for name in re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", line.split("|")[1])}
    assert served - documented == set(), f"events without a README line: {sorted(served - documented)}"
    assert documented - served == set(), f"README lines for events that no longer exist: {sorted(documented - served)}"
    assert "<lambda>" not in served


def test_the_public_api_is_the_documented_list() -> None:
    public = {b.api_name for b in app.demo.fns.values() if b.fn is not None and b.api_visibility == "public"}
    line = README[README.index("Public API endpoints"):README.index("### Every event the server answers")]
    assert public == set(re.findall(r"`/([a-z_]+)`", line))
