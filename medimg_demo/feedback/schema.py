"""The feedback store's tables, defined once for every backend (SQLite, PostgreSQL), and the one way rows become a
DataFrame, so that both backends give identical columns, dtypes and values.

Column types are the portable SQL subset both databases read alike (``TEXT``, ``INTEGER``, ``REAL``; ``CHECK`` and
``DEFAULT`` clauses as written); only the ``id`` column is spelled per backend. A column added after the first
release goes into :data:`ADDED_COLUMNS` (and into :class:`~.record.Feedback`): stores created before it are
migrated in place on first use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

import pandas as pd

from ..errors import InputError
from .record import Feedback

#: The feedback table of the first release (after ``id``), in column order.
FEEDBACK_COLUMNS: dict[str, str] = {
    "created_utc": "TEXT NOT NULL",
    "reader": "TEXT NOT NULL",
    "session_id": "TEXT NOT NULL DEFAULT ''",
    "case_id": "TEXT NOT NULL DEFAULT ''",
    "phase": "TEXT NOT NULL CHECK (phase IN ('unaided', 'aided', 'free'))",
    "model_id": "TEXT NOT NULL DEFAULT ''",
    "weights_sha256": "TEXT NOT NULL DEFAULT ''",
    "image_sha256": "TEXT NOT NULL",
    "pred_type": "TEXT",
    "pred_type_probs": "TEXT",
    "pred_stage": "TEXT",
    "pred_stage_probs": "TEXT",
    "reader_type": "TEXT",
    "reader_stage": "TEXT",
    "type_agree": "INTEGER CHECK (type_agree IN (0, 1))",
    "stage_agree": "INTEGER CHECK (stage_agree IN (0, 1))",
    "pathway_agree": "INTEGER CHECK (pathway_agree IN (0, 1))",
    "corrected_type": "TEXT",
    "corrected_stage": "TEXT",
    "heatmap_plausibility": "INTEGER CHECK (heatmap_plausibility BETWEEN 1 AND 5)",
    "confidence": "INTEGER CHECK (confidence BETWEEN 1 AND 5)",
    "comment": "TEXT",
    "truth_type": "TEXT",
    "truth_stage": "TEXT",
}
#: Columns added after the first release; a store created before them is migrated in place (both backends).
ADDED_COLUMNS: dict[str, str] = {"prediction_id": "TEXT", "idempotency_key": "TEXT", "pred_status": "TEXT"}
#: Every prediction the server showed, keyed by a random id (what feedback refers to).
PREDICTION_COLUMNS: dict[str, str] = {
    "id": "TEXT PRIMARY KEY",
    "created_utc": "TEXT NOT NULL",
    "model_id": "TEXT NOT NULL",
    "weights_sha256": "TEXT NOT NULL DEFAULT ''",
    "image_sha256": "TEXT NOT NULL",
    "outputs": "TEXT NOT NULL",
    "created_by": "TEXT NOT NULL DEFAULT ''",
}
#: Every reading session's parameters, fixed by its first start: a session name started again with another model,
#: size or seed would pool a second study into the first one's table, so it is refused (``cases.mismatch``).
READING_SESSION_COLUMNS: dict[str, str] = {
    "session_id": "TEXT PRIMARY KEY",
    "model_id": "TEXT NOT NULL",
    "n_cases": "INTEGER NOT NULL",
    "seed": "INTEGER NOT NULL",
    "started_by": "TEXT NOT NULL DEFAULT ''",
    "created_utc": "TEXT NOT NULL",
}
SESSION_INDEX = "CREATE INDEX IF NOT EXISTS feedback_session ON feedback (session_id, reader, case_id)"
#: The names Analyse-tab feedback carries (a reading session may not start under one; read in its start's transaction).
FREE_NAMES = "SELECT DISTINCT session_id FROM feedback WHERE phase = 'free' AND session_id <> ''"
#: :data:`FREE_NAMES` read from a partial index of the named free rows, not by a scan of every answer (a session's
#: start holds its name's lock while it reads them). Its WHERE must stay the query's, word for word.
FREE_NAMES_INDEX = ("CREATE INDEX IF NOT EXISTS feedback_free_names ON feedback (session_id) "
                    "WHERE phase = 'free' AND session_id <> ''")
#: Every reading session's name (free feedback may not carry one; read in its insert's transaction).
SESSION_NAMES = "SELECT session_id FROM reading_sessions"
#: Every reading session's name, model and number of cases asked for.
SESSION_PLANS = "SELECT session_id, model_id, n_cases FROM reading_sessions"
#: The idempotency key is unique (NULLs allowed: rows written before keys existed, or by the CLI).
UNIQUE_KEY = "CREATE UNIQUE INDEX IF NOT EXISTS feedback_idempotency ON feedback (idempotency_key)"
#: Rows are counted per prediction before each insert (:data:`MAX_ROWS_PER_PREDICTION`).
PREDICTION_INDEX = "CREATE INDEX IF NOT EXISTS feedback_prediction ON feedback (prediction_id)"
#: Answers one shown prediction may collect (a reader's unaided and aided reads, corrections, a few colleagues at
#: the same screen); past it, a client replaying one prediction id cannot grow the store and every summary.
MAX_ROWS_PER_PREDICTION = 20

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# names are spliced into SQL: keep them plain
for _name in [*FEEDBACK_COLUMNS, *ADDED_COLUMNS, *PREDICTION_COLUMNS, *READING_SESSION_COLUMNS]:
    if not _NAME.match(_name):
        raise RuntimeError(f"Column name {_name!r} must be lower-case letters, digits and '_'.")


def columns() -> list[str]:
    """The feedback table's columns in the order every reader returns them."""
    return ["id", *FEEDBACK_COLUMNS, *ADDED_COLUMNS]


#: Columns a read may be narrowed by (equality), so that a reading session's checks read its own rows only.
FILTER_COLUMNS = ("session_id", "reader", "case_id", "phase")



def refuse_past_limit(stored: int) -> None:
    """Refuse one more answer to a prediction that already has ``stored`` (checked inside the insert's transaction)."""
    if stored >= MAX_ROWS_PER_PREDICTION:
        raise InputError(f"This prediction already has {MAX_ROWS_PER_PREDICTION} answers, the most one shown result "
                         "takes. Run Analyse again to give feedback on a new result.")


#: What the reader answered in a row (not the model's side, which a retry of an unaided read takes from a new run).
ANSWER_COLUMNS = ("session_id", "case_id", "phase", "reader_type", "reader_stage", "type_agree", "stage_agree",
                  "pathway_agree", "corrected_type", "corrected_stage", "heatmap_plausibility", "confidence", "comment")


def refuse_other_answer(stored: Sequence[Any], row: dict[str, Any]) -> None:
    """A known submission key comes back: a retry of the same answer passes (the stored row stands); a different
    answer under it (the same case answered again from another tab or window) is refused, not dropped in silence.
    ``stored``: the stored row's :data:`ANSWER_COLUMNS`."""
    if any(a != row.get(k) for k, a in zip(ANSWER_COLUMNS, stored)):
        raise InputError("This was already answered, differently, from another tab or window (or a retry changed "
                         "the answers): the first answer is kept. In a reading session, press 'Start or resume "
                         "session' to go on from where you are.")


def select_feedback(mark: str, where: Iterable[str] = ()) -> str:
    """``SELECT`` of the feedback rows, oldest first, narrowed to rows whose ``where`` columns equal the bound values
    (in that order; ``mark`` is the backend's placeholder). Only :data:`FILTER_COLUMNS` may be named."""
    names = list(where)
    unknown = set(names) - set(FILTER_COLUMNS)
    if unknown:
        raise ValueError(f"Feedback reads can be narrowed by {', '.join(FILTER_COLUMNS)} only, not {sorted(unknown)}.")
    clause = (" WHERE " + " AND ".join(f"{n} = {mark}" for n in names)) if names else ""
    return f"SELECT {', '.join(columns())} FROM feedback{clause} ORDER BY id"


def create_feedback_table(id_column: str, sql_type: Any = None) -> str:
    """``CREATE TABLE`` for the feedback table: ``id_column`` is the backend's auto-increment id; ``sql_type`` maps a
    portable column type to the backend's spelling (default: unchanged)."""
    spell = sql_type or (lambda t: t)
    body = [f"id {id_column}"] + [f"{n} {spell(t)}" for n, t in {**FEEDBACK_COLUMNS, **ADDED_COLUMNS}.items()]
    return "CREATE TABLE IF NOT EXISTS feedback (\n    " + ",\n    ".join(body) + "\n)"


def create_reading_sessions_table() -> str:
    """``CREATE TABLE`` for the reading sessions' fixed parameters (portable as written)."""
    body = [f"{n} {t}" for n, t in READING_SESSION_COLUMNS.items()]
    return "CREATE TABLE IF NOT EXISTS reading_sessions (\n    " + ",\n    ".join(body) + "\n)"


def create_predictions_table() -> str:
    """``CREATE TABLE`` for the recorded predictions (portable as written)."""
    body = [f"{n} {t}" for n, t in PREDICTION_COLUMNS.items()]
    return "CREATE TABLE IF NOT EXISTS predictions (\n    " + ",\n    ".join(body) + "\n)"


def _dtype(column: str) -> str:
    """``int64`` for the id, ``float64`` for numbers (NaN where missing), ``object`` for text (None where missing)."""
    if column == "id":
        return "int64"
    kind = {**FEEDBACK_COLUMNS, **ADDED_COLUMNS}[column].split()[0].upper()
    return "float64" if kind in ("INTEGER", "REAL", "DOUBLE", "NUMERIC", "BIGINT") else "object"


def frame(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Rows (in :func:`columns` order) as a DataFrame whose dtypes depend on the schema, never on the data or the
    backend: the same rows give the same frame from SQLite and PostgreSQL, and an empty store the same columns."""
    cols = columns()
    return pd.DataFrame({c: pd.Series([r[i] for r in rows], dtype=_dtype(c)) for i, c in enumerate(cols)},
                        columns=cols)


def feedback_row(fb: Feedback) -> dict[str, Any]:
    """A validated submission as column -> value (probabilities as JSON text, yes/no as 0/1, scores as int)."""
    row = asdict(fb)
    unknown = set(row) - set(columns())
    if unknown:
        raise RuntimeError(f"Feedback fields without a column: {sorted(unknown)}; add them to ADDED_COLUMNS.")
    for k in ("pred_type_probs", "pred_stage_probs"):
        row[k] = json.dumps(row[k]) if row[k] is not None else None
    for k in ("type_agree", "stage_agree", "pathway_agree"):
        row[k] = None if row[k] is None else int(bool(row[k]))
    for k in ("heatmap_plausibility", "confidence"):
        row[k] = None if row[k] is None else int(row[k])
    return row


def prediction_record(row: Iterable[Any]) -> dict[str, Any]:
    """A ``predictions`` row (in :data:`PREDICTION_COLUMNS` order) as a dict, ``outputs`` parsed."""
    rec = dict(zip(PREDICTION_COLUMNS, row))
    rec["outputs"] = json.loads(rec["outputs"])
    return rec
