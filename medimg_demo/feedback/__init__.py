"""Feedback: the clinician feedback store (SQLite, one row per submission), its per-session summary, and the
seeded case lists of reading sessions."""

from __future__ import annotations

from .record import Feedback
from .store import connect, export_csv, get_prediction, read_all, record_prediction, submit
from .summary import summarise

__all__ = ["Feedback", "connect", "export_csv", "get_prediction", "read_all", "record_prediction", "submit", "summarise"]
