"""What a reader already answered in a reading session: a second, different own read of a case is refused (the
first is kept), and the own read stored for the case in hand is found again when the session is resumed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import feedback
from ..errors import InputError
from ..paths import feedback_store


def _rows(session_id: str, reader: str, case_id: str, phase: str, db: Path | None):  # noqa: ANN202
    return feedback.read_matching(db or feedback_store(), session_id=session_id, reader=reader, case_id=case_id,
                                  phase=phase)


def _missing(stored: Any) -> bool:
    """No value in a stored cell (None, or NaN where pandas read a column with gaps)."""
    return stored is None or (isinstance(stored, float) and np.isnan(stored))


def _same(stored: Any, sent: Any) -> bool:
    return sent in (None, "") if _missing(stored) else str(stored) == str(sent)


def check_not_answered_elsewhere(session_id: str, reader: str, case_id: str, phase: str, answer: dict[str, Any],
                                 db: Path | None = None) -> None:
    """Refuse an answer for a case this reader already answered differently in this phase (another tab or window
    of the same session): the first answer is the one kept, and saying "recorded" would be untrue. The same answer
    again (a retry after a lost reply) passes and stores nothing new."""
    rows = _rows(session_id, reader, case_id, phase, db)
    if rows.empty:
        return
    first = rows.iloc[0]
    if any(not _same(first[k], v) for k, v in answer.items()):
        raise InputError("This case was already answered in this session from another tab or window, differently; "
                         "the first answer is kept. Press 'Start or resume session' to continue where you are.")


def stored_own_read(session_id: str, reader: str, case_id: str, db: Path | None = None) -> dict[str, Any] | None:
    """The own read this reader recorded for a case whose aided answer is still missing ({"type", "stage",
    "confidence"}), or None: a page reloaded after the model was shown resumes there, not at a blank own-read form
    the reader would have to fill in again from memory, after seeing the model."""
    rows = _rows(session_id, reader, case_id, "unaided", db)
    if rows.empty:
        return None
    first = rows.iloc[0]
    plain = lambda v: None if _missing(v) else v  # noqa: E731
    confidence = plain(first["confidence"])
    return {"type": plain(first["reader_type"]), "stage": plain(first["reader_stage"]),
            "confidence": int(confidence) if confidence is not None else None}
