"""Where things are: the checkout, the data root, and the one folder the app writes to (MEDIMG_STATE_DIR)."""

from __future__ import annotations

import os
import tempfile
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
    """Scratch files of the app (short-lived, never served; emptied at start-up)."""
    return state_dir() / "work"


def public_dir() -> Path:
    """The one folder the web server may serve from: rendered PNGs, error-gallery images, report PDFs and
    de-identified DICOM copies, and nothing else (``public`` in the state folder)."""
    return state_dir() / "public"


def upload_dir() -> Path:
    """Gradio's upload cache (``GRADIO_TEMP_DIR``, else ``<system temp>/gradio``), as Gradio itself resolves it."""
    env = os.environ.get("GRADIO_TEMP_DIR")
    return Path(env) if env else (Path(tempfile.gettempdir()) / "gradio").resolve()


def runs_dir() -> Path:
    """Metrics log and cached evaluations."""
    return Path(os.environ.get("MEDIMG_RUNS_DIR", state_dir() / "runs"))


def private_paths() -> list[Path]:
    """What must never be served over HTTP, whatever GRADIO_TEMP_DIR and MEDIMG_STATE_DIR are: the feedback store
    (and its journal files), the runs folder (metrics log, evaluation cache), the scratch folder and the logs."""
    db = feedback_db()
    return [db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal")), runs_dir(), work_dir(),
            state_dir() / "logs"]
