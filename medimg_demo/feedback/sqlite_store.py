"""The embedded feedback backend: one SQLite file (WAL), the default on a laptop and on a single-replica Space.

Each write opens its own connection and an immediate transaction, so concurrent submissions from many browser tabs
serialise instead of losing rows. SQLite and file-system failures (read-only or full folder, locked or damaged
file) become a :class:`StoreError` that says what to do.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import StoreError
from . import schema

log = logging.getLogger(__name__)

#: The whole SQLite schema of a new store (the feedback and predictions tables and their indexes).
SCHEMA = ";\n".join([schema.create_feedback_table("INTEGER PRIMARY KEY AUTOINCREMENT"), schema.SESSION_INDEX,
                     schema.create_predictions_table(), schema.create_reading_sessions_table()]) + ";\n"

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
                        for column, kind in schema.ADDED_COLUMNS.items():
                            if column not in have:
                                con.execute(f"ALTER TABLE feedback ADD COLUMN {column} {kind}")
                        con.execute(schema.UNIQUE_KEY)
                        con.execute(schema.PREDICTION_INDEX)
                        con.execute(schema.FREE_NAMES_INDEX)
                        _initialised.add(key)
        except BaseException:
            con.close()
            raise
    return con


@contextlib.contextmanager
def _connection(db: Path) -> Iterator[sqlite3.Connection]:
    con = connect(db)
    try:
        yield con
    finally:
        con.close()


class SqliteBackend:
    """The feedback tables in one SQLite file."""

    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def describe(self) -> str:
        return f"SQLite file {self.path}"

    def exists(self) -> bool:
        """Whether the file is there (reading a store that was never written creates nothing)."""
        return self.path.is_file()

    def insert_prediction(self, rec: dict[str, Any]) -> None:
        cols = list(schema.PREDICTION_COLUMNS)
        with _connection(self.path) as con, _guard("recording the prediction"):
            con.execute(f"INSERT INTO predictions ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
                        [rec[c] for c in cols])

    def fetch_prediction(self, prediction_id: str) -> tuple[Any, ...] | None:
        with _connection(self.path) as con, _guard("reading the prediction"):
            return con.execute(f"SELECT {', '.join(schema.PREDICTION_COLUMNS)} FROM predictions WHERE id = ?",
                               (prediction_id,)).fetchone()

    def register_session(self, rec: dict[str, Any], check: Callable[[list[str], list[str]], None]) -> tuple[Any, ...]:
        """Store a reading session's parameters unless its name is taken, after ``check`` has seen every session's
        name and every name free feedback carries, all in one write transaction (another process's start, and any
        feedback insert, waits); the stored parameters either way."""
        cols = list(schema.READING_SESSION_COLUMNS)
        with _connection(self.path) as con, _guard("starting the reading session"):
            con.execute("BEGIN IMMEDIATE")
            try:
                check([r[0] for r in con.execute(schema.SESSION_NAMES)], [r[0] for r in con.execute(schema.FREE_NAMES)])
                con.execute(f"INSERT OR IGNORE INTO reading_sessions ({', '.join(cols)}) "
                            f"VALUES ({', '.join('?' for _ in cols)})", [rec[c] for c in cols])
                row = con.execute(f"SELECT {', '.join(cols)} FROM reading_sessions WHERE session_id = ?",
                                  (rec["session_id"],)).fetchone()
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
            return row

    def session_plans(self) -> dict[str, tuple[str, int]]:
        if not self.exists():
            return {}
        with _connection(self.path) as con, _guard("reading the reading sessions"):
            return {r[0]: (r[1], int(r[2])) for r in con.execute(schema.SESSION_PLANS).fetchall()}

    def insert_feedback(self, row: dict[str, Any], check: Callable[[list[str]], None] | None = None) -> int:
        """Insert one row in an immediate transaction (after ``check``, if given, has seen every session's name in
        it: a session's start waits); a known idempotency key returns the stored row's id."""
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        key = row.get("idempotency_key")
        with _connection(self.path) as con, _guard("storing the feedback"):
            con.execute("BEGIN IMMEDIATE")
            try:
                if check is not None:
                    check([r[0] for r in con.execute(schema.SESSION_NAMES)])
                if key is not None:
                    done = con.execute(f"SELECT id, {', '.join(schema.ANSWER_COLUMNS)} FROM feedback "
                                       "WHERE idempotency_key = ?", (key,)).fetchone()
                    if done is not None:
                        schema.refuse_other_answer(done[1:], row)
                        con.execute("COMMIT")
                        return int(done[0])
                if row.get("prediction_id"):
                    n = con.execute("SELECT COUNT(*) FROM feedback WHERE prediction_id = ?", (row["prediction_id"],))
                    schema.refuse_past_limit(int(n.fetchone()[0]))
                cur = con.execute(f"INSERT INTO feedback ({cols}) VALUES ({marks})", list(row.values()))
                con.execute("COMMIT")
                return int(cur.lastrowid or 0)
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise

    def fetch_feedback(self, where: dict[str, str] | None = None) -> list[tuple[Any, ...]]:
        where = where or {}
        with _connection(self.path) as con, _guard("reading the feedback"):
            return con.execute(schema.select_feedback("?", where), list(where.values())).fetchall()
