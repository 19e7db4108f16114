"""Where things are: the checkout, the data root, and the one folder the app writes to (MEDIMG_STATE_DIR)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """``MEDIMG_DATA_DIR``, else ``../shared/data`` beside the checkout."""
    env = os.environ.get("MEDIMG_DATA_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def state_dir() -> Path:
    """Writable folder for the feedback database, evaluation cache and renamed uploads (default: ./var)."""
    return Path(os.environ.get("MEDIMG_STATE_DIR", REPO_ROOT / "var"))


def feedback_db() -> Path:
    """The SQLite feedback store: ``MEDIMG_FEEDBACK_DB``, else ``feedback.sqlite`` in the state folder."""
    return Path(os.environ.get("MEDIMG_FEEDBACK_DB", state_dir() / "feedback.sqlite"))


def work_dir() -> Path:
    """Renamed uploads and de-identified copies (short-lived)."""
    return state_dir() / "work"


def runs_dir() -> Path:
    """Metrics log and cached evaluations."""
    return Path(os.environ.get("MEDIMG_RUNS_DIR", state_dir() / "runs"))
