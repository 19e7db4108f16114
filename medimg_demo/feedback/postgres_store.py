"""The server feedback backend: PostgreSQL (``MEDIMG_DB_URL``), one store for several app replicas.

Every operation opens its own connection (psycopg 3) and its own transaction; a submission with an idempotency key
is one ``INSERT ... ON CONFLICT (idempotency_key) DO NOTHING``, so a retry, or the same answer sent by two
replicas at once, keeps one row and returns its id. The schema is created (and older tables migrated) once per
process under an advisory lock, so replicas starting together do not race. Driver failures (server unreachable,
login refused, database missing, disk full, read-only standby) become a :class:`StoreError` that says what to do;
the password of the URL is never logged or shown.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

from ..confusable import skeleton
from ..errors import StoreError
from . import schema

log = logging.getLogger(__name__)

#: How long a connection attempt may take before the store reports the server as unreachable.
CONNECT_TIMEOUT_S = 10
#: pg_advisory_xact_lock key that serialises schema creation across replicas ("medimg" in ASCII).
_SCHEMA_LOCK = 0x6D6564696D67
#: pg_advisory_xact_lock(int4, int4) class of the session-name locks: a session's start and a named free submit lock
#: (this class, hashtext of the name's confusable skeleton), so that operations on names that read alike (the checks'
#: own criterion) run one at a time, and others (every named free submit had waited on one lock) at once.
_NAME_LOCK_CLASS = 0x6D65  # "me"
_URL = "the database URL (MEDIMG_DB_URL, or --db on the command line)"
_INVALID = f"{_URL} is not a valid PostgreSQL URL; write it as postgresql://USER:PASSWORD@HOST:PORT/DATABASE."


def _lock_name(con: Any, name: str) -> None:  # noqa: ANN401 - a psycopg connection
    """Hold, until the transaction ends, the lock of every session name that reads as ``name``."""
    con.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_NAME_LOCK_CLASS, skeleton(name.strip())))


def _driver() -> Any:
    try:
        import psycopg
    except ImportError:
        raise StoreError("A PostgreSQL feedback store is configured but its driver is missing: install it with "
                         "`pip install -r requirements.txt` (psycopg), or unset MEDIMG_DB_URL to use SQLite.") from None
    return psycopg


def _pg_type(kind: str) -> str:
    """PostgreSQL's spelling of a portable column type (REAL is 8 bytes in SQLite, DOUBLE PRECISION here)."""
    return re.sub(r"^REAL\b", "DOUBLE PRECISION", kind, flags=re.IGNORECASE)


class PostgresBackend:
    """The feedback tables in a PostgreSQL database (the first schema of the connection's search_path)."""

    kind = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        self._secrets = self._passwords(url)
        psycopg = _driver()
        try:
            info = psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.Error:
            info = {"port": "invalid"}
        if not re.fullmatch(r"(\d+)?(,\d*)*", str(info.get("port") or "")):
            raise StoreError(_INVALID)
        self.user = str(info.get("user") or "(default user)")
        self.dbname = str(info.get("dbname") or self.user)
        self.where = f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}"
        self._extra = {k: v for k, v in (("connect_timeout", CONNECT_TIMEOUT_S), ("application_name", "medimg_demo"))
                       if k not in info}
        self._ready = False
        self._lock = threading.Lock()

    @staticmethod
    def _passwords(url: str) -> set[str]:
        """Every spelling of the URL's password (to scrub from anything logged)."""
        found: set[str] = set()
        with contextlib.suppress(ValueError):
            raw = urlsplit(url).netloc.rpartition("@")[0].partition(":")[2]
            found |= {raw, unquote(raw)} if raw else set()
        for m in re.finditer(r"password=([^&\s]+)", url):
            found |= {m.group(1), unquote(m.group(1))}
        return {s for s in found if s}

    def _log_detail(self, exc: Exception) -> str:
        """What the log says of an error: for the server's, the table and constraint it names, never its text (a
        constraint's DETAIL quotes the failing row: readers' names and comments); for the client's (no SQLSTATE:
        the connection), its message with the password masked."""
        diag = getattr(exc, "diag", None)
        if getattr(exc, "sqlstate", None):
            where = [f"{k} {v}" for k, v in (("table", getattr(diag, "table_name", None)),
                                              ("constraint", getattr(diag, "constraint_name", None))) if v]
            return ", ".join(where) or "server error"
        return self._scrub(str(exc))[:300]

    def _scrub(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def describe(self) -> str:
        return f"PostgreSQL database '{self.dbname}' on {self.where} as '{self.user}'"

    def exists(self) -> bool:
        return True

    def _message(self, exc: Exception, action: str) -> str:
        """What the user is told: what failed, why in plain words, and what to do."""
        psycopg = _driver()
        state = getattr(exc, "sqlstate", None) or ""
        text = str(exc).lower()
        failed = f"so {action} failed"
        if "invalid" in text and ("connection option" in text or "uri" in text):
            return _INVALID
        if state in ("28P01", "28000") or "authentication failed" in text or (
                "role" in text and "does not exist" in text):
            return (f"The feedback database at {self.where} refused the login of user '{self.user}', {failed}. "
                    f"Ask the deployer to check the user and password in {_URL}; on a Space, in its secret.")
        if state == "3D000" or ("database" in text and "does not exist" in text):
            return (f"The feedback database '{self.dbname}' does not exist on {self.where}, {failed}. Ask the "
                    f"deployer to create it (createdb {self.dbname}) or to correct its name in {_URL}.")
        if state == "53100" or "disk full" in text or "no space left" in text:
            return (f"The feedback database server's disk is full, {failed} and nothing was stored. Ask the "
                    "deployer to free space on the database server, then try again.")
        if state == "25006" or "read-only transaction" in text:
            return (f"The feedback database at {self.where} is read-only (a standby server?), {failed} and nothing "
                    f"was stored. Ask the deployer to point {_URL} at the primary server.")
        if state == "42501":
            return (f"The database user '{self.user}' may not create or write the feedback tables, {failed}. Ask "
                    "the deployer to make it the owner of the database (or grant it CREATE on the schema).")
        if state in ("53300", "40001", "40P01", "55P03", "57014") or "too many" in text:
            return f"The feedback database is busy, {failed} and nothing was stored. Try again in a moment."
        if isinstance(exc, psycopg.OperationalError):
            return (f"The feedback database server at {self.where} could not be reached, {failed}. Check that the "
                    f"server is running and that the host and port in {_URL} are right, then try again.")
        return (f"The feedback database could not be used ({type(exc).__name__}), {failed}. Ask the deployer to "
                f"check the database named in {_URL} (the server's log says why).")

    @contextlib.contextmanager
    def _session(self, action: str) -> Iterator[Any]:
        """A connection (schema in place) for one operation; driver errors become a StoreError that says what to
        do. The driver's exception is not chained: its text is logged, scrubbed of the password, and not shown."""
        psycopg = _driver()
        con = None
        try:
            try:
                con = psycopg.connect(self.url, autocommit=True, **self._extra)
                if not self._ready:
                    with self._lock:
                        if not self._ready:
                            self._create_schema(con)
                            self._ready = True
                yield con
            finally:
                if con is not None:
                    con.close()
        except psycopg.Error as exc:
            log.error("Feedback store (%s): %s failed (%s, SQLSTATE %s: %s)", self.describe(), action,
                      type(exc).__name__, getattr(exc, "sqlstate", None), self._log_detail(exc))
            raise StoreError(self._message(exc, action)) from None

    def _create_schema(self, con: Any) -> None:
        """Tables and indexes in place, columns added since the first release migrated; one replica at a time."""
        with con.transaction():
            con.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            con.execute(schema.create_feedback_table("BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
                                                     _pg_type))
            con.execute(schema.SESSION_INDEX)
            con.execute(schema.create_predictions_table())
            con.execute(schema.create_reading_sessions_table())
            have = {r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = %s", ("feedback",))}
            for column, kind in schema.ADDED_COLUMNS.items():
                if column not in have:
                    log.info("Feedback store: adding column %s to %s", column, self.describe())
                    con.execute(f"ALTER TABLE feedback ADD COLUMN {column} {_pg_type(kind)}")
            con.execute(schema.UNIQUE_KEY)
            con.execute(schema.PREDICTION_INDEX)
            con.execute(schema.FREE_NAMES_INDEX)

    def insert_prediction(self, rec: dict[str, Any]) -> None:
        cols = list(schema.PREDICTION_COLUMNS)
        with self._session("recording the prediction") as con:
            con.execute(f"INSERT INTO predictions ({', '.join(cols)}) VALUES ({', '.join('%s' for _ in cols)})",
                        [rec[c] for c in cols])

    def fetch_prediction(self, prediction_id: str) -> tuple[Any, ...] | None:
        with self._session("reading the prediction") as con:
            return con.execute(f"SELECT {', '.join(schema.PREDICTION_COLUMNS)} FROM predictions WHERE id = %s",
                               (prediction_id,)).fetchone()

    def register_session(self, rec: dict[str, Any], check: Callable[[list[str], list[str]], None]) -> tuple[Any, ...]:
        """Store a reading session's parameters unless its name is taken (by any replica), after ``check`` has seen
        every session's name and every name free feedback carries, one start (or named free insert) at a time: an
        advisory lock held by the transaction, whose reads see what committed before the lock was granted (read
        committed, whatever the server's default); the stored parameters."""
        cols = list(schema.READING_SESSION_COLUMNS)
        with self._session("starting the reading session") as con, con.transaction():
            con.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            _lock_name(con, rec["session_id"])
            check([r[0] for r in con.execute(schema.SESSION_NAMES).fetchall()],
                  [r[0] for r in con.execute(schema.FREE_NAMES).fetchall()])
            con.execute(f"INSERT INTO reading_sessions ({', '.join(cols)}) VALUES ({', '.join('%s' for _ in cols)}) "
                        "ON CONFLICT (session_id) DO NOTHING", [rec[c] for c in cols])
            return con.execute(f"SELECT {', '.join(cols)} FROM reading_sessions WHERE session_id = %s",
                               (rec["session_id"],)).fetchone()

    def session_plans(self) -> dict[str, tuple[str, int]]:
        with self._session("reading the reading sessions") as con:
            return {r[0]: (r[1], int(r[2])) for r in con.execute(schema.SESSION_PLANS).fetchall()}

    def insert_feedback(self, row: dict[str, Any], check: Callable[[list[str]], None] | None = None) -> int:
        """Insert one row; a known idempotency key (stored before, or by a concurrent request) returns that row's id.
        ``check``, if given, sees every session's name first, under the lock a session's start takes.

        The key is looked up first so that a plain retry does not use up an id; ``ON CONFLICT`` settles the race
        of two requests with the same key (the second waits for the first to commit, then inserts nothing).
        """
        cols = ", ".join(row)
        marks = ", ".join("%s" for _ in row)
        key = row.get("idempotency_key")
        find = f"SELECT id, {', '.join(schema.ANSWER_COLUMNS)} FROM feedback WHERE idempotency_key = %s"
        with self._session("storing the feedback") as con, con.transaction():
            # each statement sees what committed before it (whatever the server's default), and one answer to a
            # prediction at a time, whichever replica: the key lookup and the count both after the lock
            con.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            if row.get("prediction_id"):
                con.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (row["prediction_id"],))
            if check is not None:  # after the prediction's lock, as every taker of both (a start takes this one only)
                _lock_name(con, str(row.get("session_id") or ""))
                check([r[0] for r in con.execute(schema.SESSION_NAMES).fetchall()])
            if key is not None and (done := con.execute(find, (key,)).fetchone()) is not None:
                schema.refuse_other_answer(done[1:], row)
                return int(done[0])
            if row.get("prediction_id"):
                n = con.execute("SELECT COUNT(*) FROM feedback WHERE prediction_id = %s", (row["prediction_id"],))
                schema.refuse_past_limit(int(n.fetchone()[0]))
            got = con.execute(f"INSERT INTO feedback ({cols}) VALUES ({marks}) "
                              "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id", list(row.values())).fetchone()
            if got is None:  # a concurrent request with the same key committed first
                got = con.execute(find, (key,)).fetchone()
                schema.refuse_other_answer(got[1:], row)
            return int(got[0])

    def fetch_feedback(self, where: dict[str, str] | None = None) -> list[tuple[Any, ...]]:
        where = where or {}
        with self._session("reading the feedback") as con:
            return con.execute(schema.select_feedback("%s", where), list(where.values())).fetchall()
