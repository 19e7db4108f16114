"""Session names that read alike: one confusable skeleton (UTS #39, case folded; :mod:`medimg_demo.confusable`).

"rv‐shared" (a hyphen, U+2010), "rv−shared" (a minus sign), "rv-shɑred" (a Latin alpha), "rv-sհared" (an Armenian
letter) and "RV-Shared" all read as "rv-shared", and a reader typing one of them would start a session apart from
the others' (hostile review, thirty-seventh session; the character rules in :mod:`.record` refuse invisible and
mixed-alphabet names, not letters of one alphabet that look like another's).
"""

from __future__ import annotations

from ..confusable import skeleton

__all__ = ["named_alike", "skeleton"]


def named_alike(ids: list[str], name: str) -> str | None:
    """A name of ``ids`` that reads as ``name`` but is not it (other case, look-alike characters), if ``name`` itself
    is not one of them; else None."""
    if name in ids:
        return None
    drawn = skeleton(name)
    return next((i for i in ids if skeleton(i) == drawn), None)
