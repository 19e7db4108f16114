"""Where the app writes: one folder the deployer sets (MEDIMG_STATE_DIR), nothing outside it."""

from __future__ import annotations

import os
from pathlib import Path

from .registry import REPO_ROOT


def state_dir() -> Path:
    """Writable folder for the feedback database, evaluation cache and renamed uploads (default: ./var)."""
    return Path(os.environ.get("MEDIMG_STATE_DIR", REPO_ROOT / "var"))


def feedback_db() -> Path:
    return Path(os.environ.get("MEDIMG_FEEDBACK_DB", state_dir() / "feedback.sqlite"))


def work_dir() -> Path:
    """Renamed uploads and de-identified copies (short-lived)."""
    return state_dir() / "work"


def runs_dir() -> Path:
    """Metrics log and cached evaluations."""
    return Path(os.environ.get("MEDIMG_RUNS_DIR", state_dir() / "runs"))
