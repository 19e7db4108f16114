"""Clinician feedback store (SQLite, WAL): one row per submission, keyed by image hash and model version.

No image, no file name and no DICOM attribute is stored: only the pixel SHA-256, what the model
showed and what the reader said. Each write opens its own connection and an immediate transaction,
so concurrent submissions from many browser tabs serialise instead of losing rows.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ..errors import InputError

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
    truth_type TEXT, truth_stage TEXT
);
CREATE INDEX IF NOT EXISTS feedback_session ON feedback (session_id, reader, case_id);
"""

_PSEUDONYM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{1,39}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_init_lock = threading.Lock()
_initialised: set[str] = set()


@dataclass
class Feedback:
    """One submission. ``phase``: 'unaided' (reader's own call before seeing the model), 'aided' (after), 'free'."""

    reader: str
    image_sha256: str
    phase: str = "free"
    session_id: str = ""
    case_id: str = ""
    model_id: str = ""
    weights_sha256: str = ""
    pred_type: str | None = None
    pred_type_probs: dict[str, float] | None = None
    pred_stage: str | None = None
    pred_stage_probs: dict[str, float] | None = None
    reader_type: str | None = None
    reader_stage: str | None = None
    type_agree: bool | None = None
    stage_agree: bool | None = None
    pathway_agree: bool | None = None
    corrected_type: str | None = None
    corrected_stage: str | None = None
    heatmap_plausibility: int | None = None
    confidence: int | None = None
    comment: str | None = None
    truth_type: str | None = None
    truth_stage: str | None = None
    created_utc: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="milliseconds"))

    def validate(self) -> None:
        if not _PSEUDONYM.match(self.reader or ""):
            raise InputError(
                "Enter a reader pseudonym of 2-40 letters, digits, '.', '_' or '-' (for example 'reader07'); "
                "no real name is needed."
            )
        if not _SHA.match(self.image_sha256 or ""):
            raise InputError("Run a prediction first: feedback is stored against the image's hash.")
        if self.phase not in ("unaided", "aided", "free"):
            raise InputError(f"Unknown phase {self.phase!r}.")
        for name in ("heatmap_plausibility", "confidence"):
            v = getattr(self, name)
            if v is not None and not (1 <= int(v) <= 5):
                raise InputError(f"{name.replace('_', ' ').capitalize()} must be between 1 and 5.")
        if self.comment and len(self.comment) > 4000:
            raise InputError("The comment is longer than 4000 characters; shorten it.")


def connect(db: Path) -> sqlite3.Connection:
    """A connection with the schema in place, WAL journaling and a generous busy timeout."""
    db.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(str(db), timeout=60.0, isolation_level=None)
    con.execute("PRAGMA busy_timeout = 60000")
    key = str(db.resolve())
    if key not in _initialised:
        with _init_lock:
            if key not in _initialised:
                con.execute("PRAGMA journal_mode = WAL")
                con.executescript(SCHEMA)
                _initialised.add(key)
    return con


def submit(db: Path, fb: Feedback) -> int:
    """Store one submission; returns its row id."""
    fb.validate()
    row = asdict(fb)
    for k in ("pred_type_probs", "pred_stage_probs"):
        row[k] = json.dumps(row[k]) if row[k] is not None else None
    for k in ("type_agree", "stage_agree", "pathway_agree"):
        row[k] = None if row[k] is None else int(bool(row[k]))
    cols = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    con = connect(db)
    try:
        con.execute("BEGIN IMMEDIATE")
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
        return pd.read_sql_query("SELECT * FROM feedback ORDER BY id", con)
    finally:
        con.close()


def export_csv(db: Path, out: Path) -> int:
    """Write every row to a CSV file; returns the row count."""
    df = read_all(db)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    return len(df)
