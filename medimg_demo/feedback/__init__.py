"""Feedback: the clinician feedback store (SQLite, one row per submission), its per-session summary, and the
seeded case lists of reading sessions."""

from __future__ import annotations

from .store import Feedback, connect, export_csv, read_all, submit
from .summary import summarise

__all__ = ["Feedback", "connect", "export_csv", "read_all", "submit", "summarise"]
