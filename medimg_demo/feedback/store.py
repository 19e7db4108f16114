"""Clinician feedback store (SQLite, WAL): every prediction the app showed, and one row per feedback submission.

No image, no file name and no DICOM attribute is stored: only the pixel SHA-256, what the model showed and what
the reader said. The server records each prediction it shows (``predictions``, keyed by a random id) and feedback
refers to that id, so what the model said cannot be forged by a client. Each write opens its own connection and
an immediate transaction, so concurrent submissions from many browser tabs serialise instead of losing rows; an
idempotency key per submission makes a retry after a lost answer return the same row instead of a duplicate.
SQLite failures (read-only or full folder, locked or damaged file) become a :class:`StoreError` that says what
to do.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InputError, StoreError
from .record import PREDICTION_ID_RE, SHA256_RE, MAX_OUTPUTS_JSON, Feedback

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_utc TEXT NOT NULL,
    reader TEXT NOT NULL,
    session_id TEXT NOT NULL DEFAULT '',
    case_id TEXT NOT NULL DEFAULT '',
    phase TEXT NOT NULL CHECK (phase IN ('unaided', 'aided', 'free')),
    model_id TEXT NOT NULL DEFAULT '',
    weights_sha256 TEXT NOT NULL DEFAULT '',
    image_sha256 TEXT NOT NULL,
    pred_type TEXT, pred_type_probs TEXT, pred_stage TEXT, pred_stage_probs TEXT,
    reader_type TEXT, reader_stage TEXT,
    type_agree INTEGER CHECK (type_agree IN (0, 1)),
    stage_agree INTEGER CHECK (stage_agree IN (0, 1)),
    pathway_agree INTEGER CHECK (pathway_agree IN (0, 1)),
    corrected_type TEXT, corrected_stage TEXT,
    heatmap_plausibility INTEGER CHECK (heatmap_plausibility BETWEEN 1 AND 5),
    confidence INTEGER CHECK (confidence BETWEEN 1 AND 5),
    comment TEXT,
    truth_type TEXT, truth_stage TEXT,
    prediction_id TEXT,
    idempotency_key TEXT
);
CREATE INDEX IF NOT EXISTS feedback_session ON feedback (session_id, reader, case_id);
CREATE TABLE IF NOT EXISTS predictions (
    id TEXT PRIMARY KEY,
    created_utc TEXT NOT NULL,
    model_id TEXT NOT NULL,
    weights_sha256 TEXT NOT NULL DEFAULT '',
    image_sha256 TEXT NOT NULL,
    outputs TEXT NOT NULL,
    created_by TEXT NOT NULL DEFAULT ''
);
"""
#: Columns added after the first release; a store created before them is migrated in place.
ADDED_COLUMNS = {"prediction_id": "TEXT", "idempotency_key": "TEXT", "pred_status": "TEXT"}
#: The idempotency key is unique (NULLs allowed: rows written before keys existed, or by the CLI).
UNIQUE_KEY = "CREATE UNIQUE INDEX IF NOT EXISTS feedback_idempotency ON feedback (idempotency_key)"

_init_lock = threading.Lock()
_initialised: set[str] = set()


@contextlib.contextmanager
def _guard(action: str) -> Iterator[None]:
    """Turn SQLite and file-system failures into a StoreError whose message says what to do (never a bare 500)."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        text = str(exc).lower()
        code = getattr(exc, "errno", None)
        log.error("Feedback store: %s failed (%s: %s)", action, type(exc).__name__, text[:200])
        if "readonly" in text or "read-only" in text or code in (errno.EROFS, errno.EACCES, errno.EPERM):
            msg = (f"The feedback store is read-only, so {action} failed and nothing was stored. "
                   "Ask the deployer to make the state folder (MEDIMG_STATE_DIR) writable, then try again.")
        elif "full" in text or code in (errno.ENOSPC, errno.EDQUOT):
            msg = (f"The server's disk is full, so {action} failed and nothing was stored. "
                   "Ask the deployer to free space in the state folder (MEDIMG_STATE_DIR), then try again.")
        elif "locked" in text or "busy" in text:
            msg = f"The feedback store is busy, so {action} failed and nothing was stored. Try again in a moment."
        else:
            msg = (f"The feedback store could not be used ({type(exc).__name__}), so {action} failed and nothing "
                   "was stored. Ask the deployer to check the state folder (MEDIMG_STATE_DIR).")
        raise StoreError(msg) from exc


def connect(db: Path) -> sqlite3.Connection:
    """A connection with the schema in place (older stores migrated), WAL journaling and a generous busy timeout."""
    with _guard("opening the feedback store"):
        db.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(str(db), timeout=60.0, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout = 60000")
            key = str(db.resolve())
            if key not in _initialised:
                with _init_lock:
                    if key not in _initialised:
                        con.execute("PRAGMA journal_mode = WAL")
                        con.executescript(SCHEMA)
                        have = {r[1] for r in con.execute("PRAGMA table_info(feedback)")}
                        for column, kind in ADDED_COLUMNS.items():
                            if column not in have:
                                con.execute(f"ALTER TABLE feedback ADD COLUMN {column} {kind}")
                        con.execute(UNIQUE_KEY)
                        _initialised.add(key)
        except BaseException:
            con.close()
            raise
    return con


def new_prediction_id() -> str:
    """A random 128-bit id: predictions cannot be enumerated or guessed by another client."""
    return secrets.token_hex(16)


def record_prediction(db: Path, *, model_id: str, weights_sha256: str, image_sha256: str, outputs: dict[str, Any],
                      created_by: str = "") -> str:
    """Record a prediction the server is about to show; returns its id (what feedback refers to)."""
    text = json.dumps(outputs, sort_keys=True, allow_nan=False)
    if len(text) > MAX_OUTPUTS_JSON:
        raise InputError("The prediction is too large to record.")
    if not SHA256_RE.match(image_sha256 or ""):
        raise InputError("A prediction needs the image's SHA-256.")
    pid = new_prediction_id()
    created = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    con = connect(db)
    try:
        with _guard("recording the prediction"):
            con.execute(
                "INSERT INTO predictions (id, created_utc, model_id, weights_sha256, image_sha256, outputs, created_by)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (pid, created, model_id, weights_sha256 or "", image_sha256, text, created_by or ""),
            )
    finally:
        con.close()
    return pid


def get_prediction(db: Path, prediction_id: str) -> dict[str, Any] | None:
    """The recorded prediction (``outputs`` parsed), or None for an unknown id."""
    if not isinstance(prediction_id, str) or not PREDICTION_ID_RE.match(prediction_id):
        return None
    con = connect(db)
    try:
        with _guard("reading the prediction"):
            row = con.execute(
                "SELECT id, created_utc, model_id, weights_sha256, image_sha256, outputs, created_by "
                "FROM predictions WHERE id = ?", (prediction_id,)).fetchone()
    finally:
        con.close()
    if row is None:
        return None
    keys = ("id", "created_utc", "model_id", "weights_sha256", "image_sha256", "outputs", "created_by")
    rec = dict(zip(keys, row))
    rec["outputs"] = json.loads(rec["outputs"])
    return rec


def _from_prediction(fb: Feedback, rec: dict[str, Any]) -> None:
    """What the model said comes from the server's record of the prediction, never from the client."""
    out = rec["outputs"]
    stage = out.get("stage") or {}
    fb.model_id, fb.weights_sha256, fb.image_sha256 = rec["model_id"], rec["weights_sha256"], rec["image_sha256"]
    fb.pred_type = (out.get("type") or {}).get("label")
    fb.pred_type_probs = (out.get("type") or {}).get("probabilities")
    fb.pred_stage, fb.pred_stage_probs = stage.get("label"), stage.get("probabilities")
    status = out.get("status", "ok")
    fb.pred_status = status if status in ("ok", "refused", "indeterminate") else None


def submit(db: Path, fb: Feedback) -> int:
    """Store one submission; returns its row id (the same id again for a retry with the same idempotency key).

    With a ``prediction_id``, the model's side of the row is filled from the recorded prediction; an unknown id
    is refused.
    """
    if fb.prediction_id is not None:
        rec = get_prediction(db, str(fb.prediction_id))
        if rec is None:
            raise InputError("This prediction is not known to this server: run the prediction again and give "
                             "feedback on what is shown.")
        _from_prediction(fb, rec)
    fb.validate()
    row = asdict(fb)
    for k in ("pred_type_probs", "pred_stage_probs"):
        row[k] = json.dumps(row[k]) if row[k] is not None else None
    for k in ("type_agree", "stage_agree", "pathway_agree"):
        row[k] = None if row[k] is None else int(bool(row[k]))
    for k in ("heatmap_plausibility", "confidence"):
        row[k] = None if row[k] is None else int(row[k])
    cols = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    con = connect(db)
    try:
        with _guard("storing the feedback"):
            con.execute("BEGIN IMMEDIATE")
            try:
                if fb.idempotency_key is not None:
                    done = con.execute("SELECT id FROM feedback WHERE idempotency_key = ?",
                                       (fb.idempotency_key,)).fetchone()
                    if done is not None:
                        con.execute("COMMIT")
                        return int(done[0])
                cur = con.execute(f"INSERT INTO feedback ({cols}) VALUES ({marks})", list(row.values()))
                con.execute("COMMIT")
                return int(cur.lastrowid or 0)
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
    finally:
        con.close()


def read_all(db: Path) -> pd.DataFrame:
    """Every stored row, oldest first (an empty frame with the columns where there is no store yet)."""
    if not Path(db).is_file():
        return pd.DataFrame(columns=[f.name for f in Feedback.__dataclass_fields__.values()])
    con = connect(db)
    try:
        with _guard("reading the feedback"):
            return pd.read_sql_query("SELECT * FROM feedback ORDER BY id", con)
    finally:
        con.close()


#: Leading characters a spreadsheet reads as the start of a formula (OWASP "CSV injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """Prefix every text cell that starts like a formula with a single quote, so that a spreadsheet shows it as
    text instead of running it (OWASP CSV injection advice). Numbers are left as they are."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(
                lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_PREFIXES) else v)
    return out


def export_csv(db: Path, out: Path, df: pd.DataFrame | None = None) -> int:
    """Write every row (or ``df``, a selection of them) to a CSV file safe to open in a spreadsheet; returns the
    row count."""
    df = read_all(db) if df is None else df
    out.parent.mkdir(parents=True, exist_ok=True)
    neutralise_formulas(df).to_csv(out, index=False)
    return len(df)
