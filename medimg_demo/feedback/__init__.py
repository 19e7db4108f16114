"""Feedback: the clinician feedback store (an embedded SQLite file, or PostgreSQL with ``MEDIMG_DB_URL``; one
row per submission), its per-session summary, and the seeded case lists of reading sessions."""

from __future__ import annotations

from .record import Feedback
from .store import (FeedbackStore, connect, existing_location, export_csv, get_prediction, is_url, open_store,
                    read_all, read_matching, record_prediction, register_session, submit, write_csv)
from .summary import summarise

__all__ = ["Feedback", "FeedbackStore", "connect", "existing_location", "export_csv", "get_prediction", "is_url",
           "open_store",
           "read_all", "read_matching", "record_prediction", "register_session", "submit", "summarise",
           "write_csv"]
