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


#: Where a Hugging Face Space mounts its persistent storage (when the Space has it); the rest of its disk is wiped
#: at every restart.
PERSISTENT_ROOT = Path("/data")


def persistent_dir(root: Path | None = None) -> Path | None:
    """The persistent volume (``root``, default :data:`PERSISTENT_ROOT`) when it is a folder this process may write
    to, else None."""
    root = PERSISTENT_ROOT if root is None else root
    return root if root.is_dir() and os.access(root, os.W_OK | os.X_OK) else None


def feedback_db(persistent_root: Path | None = None) -> Path:
    """The SQLite feedback store: ``MEDIMG_FEEDBACK_DB``; else ``feedback.sqlite`` in ``MEDIMG_STATE_DIR`` when that
    is set; else on the persistent volume (``/data/medimg_demo/``) when there is a writable one, so that feedback
    on a Space with persistent storage survives a restart; else ``feedback.sqlite`` in the state folder (./var)."""
    if os.environ.get("MEDIMG_FEEDBACK_DB"):
        return Path(os.environ["MEDIMG_FEEDBACK_DB"])
    volume = None if os.environ.get("MEDIMG_STATE_DIR") else persistent_dir(persistent_root)
    return volume / "medimg_demo" / "feedback.sqlite" if volume else state_dir() / "feedback.sqlite"


def feedback_store() -> Path | str:
    """Where feedback is kept: the PostgreSQL URL ``MEDIMG_DB_URL`` when set (several replicas share one store),
    else the SQLite file :func:`feedback_db`."""
    return os.environ.get("MEDIMG_DB_URL", "").strip() or feedback_db()


def work_dir() -> Path:
    """Scratch files of the app (short-lived, never served; emptied at start-up)."""
    return state_dir() / "work"


def public_dir() -> Path:
    """The one folder the web server may serve from: rendered PNGs, error-gallery images, report PDFs and
    de-identified DICOM copies, and nothing else (``public`` in the state folder)."""
    return state_dir() / "public"


#: The name app.py gives Gradio's upload folder when the deployer sets none (``<system temp>/medimg_demo-uploads-<key>``).
DEFAULT_UPLOAD_PREFIX = "medimg_demo-uploads-"


def upload_dir() -> Path:
    """Gradio's upload cache (``GRADIO_TEMP_DIR``, else ``<system temp>/gradio``), as Gradio itself resolves it."""
    env = os.environ.get("GRADIO_TEMP_DIR")
    return Path(env) if env else (Path(tempfile.gettempdir()) / "gradio").resolve()


def runs_dir() -> Path:
    """Metrics log and cached evaluations."""
    return Path(os.environ.get("MEDIMG_RUNS_DIR", state_dir() / "runs"))


def private_paths() -> list[Path]:
    """What must never be served over HTTP, whatever GRADIO_TEMP_DIR and MEDIMG_STATE_DIR are: the feedback store
    (and its journal files), the runs folder (metrics log, evaluation cache), the scratch folder, the logs and the
    logins file (``MEDIMG_AUTH_FILE``, wherever a deployer put it: in Gradio's upload folder it was served)."""
    db = feedback_db()
    logins = os.environ.get("MEDIMG_AUTH_FILE", "").strip()
    return [db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal")), runs_dir(), work_dir(),
            state_dir() / "logs", *([Path(logins).expanduser()] if logins else [])]
