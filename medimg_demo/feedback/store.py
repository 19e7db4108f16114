"""Clinician feedback store: every prediction the app showed, and one row per feedback submission.

One interface, two backends: an embedded SQLite file (the default; :mod:`.sqlite_store`) or a PostgreSQL server
for several app replicas (``MEDIMG_DB_URL``; :mod:`.postgres_store`). A *store location* is a SQLite file path
or a ``postgresql://`` URL (or an open :class:`FeedbackStore`); every function here takes one, so callers pass
what :func:`~medimg_demo.paths.feedback_store` returns and never care which backend answers.

No image, no file name and no DICOM attribute is stored: only the pixel SHA-256, what the model showed and what
the reader said. The server records each prediction it shows (``predictions``, keyed by a random id) and feedback
refers to that id, so what the model said cannot be forged by a client. Validation (:mod:`.record`), the schema
and the DataFrame the readers return (:mod:`.schema`) are shared, so both backends store and return the same
rows; an idempotency key per submission makes a retry after a lost answer return the same row, not a duplicate.
Failures become a :class:`StoreError` that says what to do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, Union

import pandas as pd

from ..errors import InputError, StoreError
from ..paths import feedback_store
from . import schema
from .lookalike import named_alike
from .postgres_store import PostgresBackend
from .record import MAX_OUTPUTS_JSON, PREDICTION_ID_RE, SHA256_RE, Feedback
from .schema import ADDED_COLUMNS, UNIQUE_KEY  # noqa: F401 - part of this module's interface
from .sqlite_store import SCHEMA, SqliteBackend, connect  # noqa: F401 - part of this module's interface

log = logging.getLogger(__name__)

URL_SCHEMES = ("postgresql", "postgres")


class Backend(Protocol):
    """What a backend does: plain reads and writes of rows the shared code has already checked."""

    kind: str

    def describe(self) -> str: ...  # where the store is, never a password
    def exists(self) -> bool: ...  # False: nothing was ever written (reading gives an empty frame)
    def insert_prediction(self, rec: dict[str, Any]) -> None: ...
    def fetch_prediction(self, prediction_id: str) -> tuple[Any, ...] | None: ...
    def insert_feedback(self, row: dict[str, Any], check: Callable[[list[str]], None] | None = None) -> int: ...
    # same id again for a known idempotency key; ``check`` sees every session name first, in the same transaction
    def register_session(self, rec: dict[str, Any],
                         check: Callable[[list[str], list[str]], None]) -> tuple[Any, ...]: ...
    # the stored parameters; ``check`` sees every session name and every name free feedback carries first, in the
    # same transaction (it may refuse)
    def session_plans(self) -> dict[str, tuple[str, int]]: ...  # each reading session: (model, cases asked for)
    def fetch_feedback(self, where: dict[str, str] | None = None) -> list[tuple[Any, ...]]: ...
    # schema.columns() order, oldest first; ``where``: column -> value, equality on schema.FILTER_COLUMNS only


def new_prediction_id() -> str:
    """A random 128-bit id: predictions cannot be enumerated or guessed by another client."""
    return secrets.token_hex(16)


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


def scoped_key(key: str, reader: str) -> str:
    """The stored form of a client's idempotency key: one per reader, so that a key sent again by the same reader
    (a retry) finds its row, while the same key from another reader (a client reusing keys, or one copying a
    reading session's predictable key) stores its own row instead of being taken for a retry and dropped."""
    return "k-" + hashlib.sha256(f"{reader}\x1f{key}".encode()).hexdigest()[:40]


class FeedbackStore:
    """The feedback store at one location, whichever backend holds it (see :func:`open_store`)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @property
    def kind(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.backend.kind

    def __repr__(self) -> str:
        return f"FeedbackStore({self.backend.describe()})"

    def record_prediction(self, *, model_id: str, weights_sha256: str, image_sha256: str, outputs: dict[str, Any],
                          created_by: str = "") -> str:
        """Record a prediction the server is about to show; returns its id (what feedback refers to)."""
        text = json.dumps(outputs, sort_keys=True, allow_nan=False)
        if len(text) > MAX_OUTPUTS_JSON:
            raise InputError("The prediction is too large to record.")
        if not SHA256_RE.match(image_sha256 or ""):
            raise InputError("A prediction needs the image's SHA-256.")
        pid = new_prediction_id()
        self.backend.insert_prediction({
            "id": pid, "created_utc": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "model_id": model_id, "weights_sha256": weights_sha256 or "", "image_sha256": image_sha256,
            "outputs": text, "created_by": created_by or ""})
        return pid

    def get_prediction(self, prediction_id: str) -> dict[str, Any] | None:
        """The recorded prediction (``outputs`` parsed), or None for an unknown id."""
        if not isinstance(prediction_id, str) or not PREDICTION_ID_RE.match(prediction_id):
            return None
        row = self.backend.fetch_prediction(prediction_id)
        return None if row is None else schema.prediction_record(row)

    def register_session(self, session_id: str, model_id: str, n_cases: int, seed: int, started_by: str = "") -> dict[
            str, Any]:
        """Fix a reading session's model, size and seed at its first start; the parameters it was started with (the
        ones given, or an earlier start's)."""
        def no_name_alike(ids: list[str], free: list[str]) -> None:  # in the insert's transaction: two first
            # starts of "RS-1" and "rs-1" at once, one is refused; a new one, not under a name free feedback carries
            if session_id not in ids and (taken := session_id if session_id in free else named_alike(free, session_id)):
                raise InputError(f"'{taken}' already names feedback given on the Analyse tab (its summary would count "
                                 "those answers as the session's); give the reading session a name of its own.")
            if (alike := named_alike(ids, session_id)) is not None:
                raise InputError(f"A reading session named '{alike}' exists: names that read alike (other case, "
                                 "look-alike characters) would be taken for one session. Type "
                                 f"'{alike}' to join it, or give a new session a name of its own.")

        row = self.backend.register_session({
            "session_id": session_id, "model_id": model_id, "n_cases": int(n_cases), "seed": int(seed),
            "started_by": started_by or "", "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")},
            no_name_alike)
        return dict(zip(schema.READING_SESSION_COLUMNS, row))

    def session_plans(self) -> dict[str, tuple[str, int]]:
        """Every registered reading session's model and number of cases asked for, by its name."""
        return self.backend.session_plans()

    def sessionnamed_alike(self, session_id: str) -> str | None:
        """A registered session whose name differs from ``session_id`` only in case ("RS-75C98D" for "rs-75c98d"), if
        no session has this very name; else None."""
        return named_alike(list(self.backend.session_plans()), session_id)

    def submit(self, fb: Feedback) -> int:
        """Store one submission; returns its row id (the same id again for a retry with the same idempotency key).

        With a ``prediction_id``, the model's side of the row is filled from the recorded prediction; an unknown
        id is refused.
        """
        if fb.prediction_id is not None:
            rec = self.get_prediction(str(fb.prediction_id))
            if rec is None:
                raise InputError("This prediction is not known to this server: run the prediction again and give "
                                 "feedback on what is shown.")
            _from_prediction(fb, rec)
        fb.validate()
        name = fb.session_id.strip() if fb.phase == "free" else ""

        def not_a_session(ids: list[str]) -> None:  # a reading session's figures are its cases' (checked in the
            if (taken := name if name in ids else named_alike(ids, name)) is not None:  # insert's transaction)
                raise InputError(f"'{taken}' is a reading session: its cases are answered on the Reading session tab. "
                                 "Leave the session id empty, or give a name no reading session has.")
        row = schema.feedback_row(fb)
        if row.get("idempotency_key"):
            row["idempotency_key"] = scoped_key(str(row["idempotency_key"]), row["reader"])
        return self.backend.insert_feedback(row, not_a_session if name else None)

    def read_all(self) -> pd.DataFrame:
        """Every stored row, oldest first, with the same columns and dtypes on every backend (an empty frame with
        those columns where nothing was stored yet)."""
        return self.read_matching()

    def read_matching(self, **equal: str) -> pd.DataFrame:
        """The stored rows whose columns equal ``equal`` (``session_id``, ``reader``, ``case_id``, ``phase``),
        oldest first, as :meth:`read_all` gives them; the database does the narrowing, so a reading session's
        checks do not read every other session's rows."""
        return schema.frame(self.backend.fetch_feedback(equal) if self.backend.exists() else [])

    def export_csv(self, out: Path, df: pd.DataFrame | None = None) -> int:
        """Write every row (or ``df``, a selection of them) to a CSV file safe to open in a spreadsheet; returns the
        row count."""
        return write_csv(self.read_all() if df is None else df, out)


StoreLocation = Union[Path, str, FeedbackStore]

_stores: dict[str, FeedbackStore] = {}
_stores_lock = threading.Lock()


def is_url(location: object) -> bool:
    """Whether ``location`` names a database server (``postgresql://...``) rather than a SQLite file."""
    return isinstance(location, str) and "://" in location


def open_store(location: StoreLocation | None = None) -> FeedbackStore:
    """The store at ``location`` (a SQLite file path or a ``postgresql://`` URL; default: ``MEDIMG_DB_URL``, else
    the SQLite file of :func:`~medimg_demo.paths.feedback_db`). One object per location and process, so the
    schema is checked once."""
    if isinstance(location, FeedbackStore):
        return location
    location = feedback_store() if location is None else location
    if is_url(location):
        key = str(location)
        if key.split("://", 1)[0].lower() not in URL_SCHEMES:
            raise StoreError(f"The feedback store URL must start with postgresql:// (given: {key.split('://')[0]}://);"
                             " or give the path of a SQLite file.")
    else:
        key = f"sqlite:{Path(location).resolve()}"
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = FeedbackStore(PostgresBackend(key) if is_url(location) else SqliteBackend(Path(location)))
            log.info("Feedback store: %s", store.backend.describe())
            _stores[key] = store
    return store


def existing_location(location: StoreLocation | None) -> StoreLocation | None:
    """``location`` unchanged, after checking that a SQLite file named on a command line exists: reading a mistyped
    path would report an empty store ("no feedback yet") instead of the rows the user meant."""
    if location is None or isinstance(location, FeedbackStore) or is_url(location) or Path(location).is_file():
        return location
    raise StoreError(f"No feedback store at {location}: nothing has been stored there. Check --db (a SQLite file the "
                     "app wrote, by default var/feedback.sqlite, or a postgresql:// URL).")


def record_prediction(db: StoreLocation, *, model_id: str, weights_sha256: str, image_sha256: str,
                      outputs: dict[str, Any], created_by: str = "") -> str:
    """Record a prediction the server is about to show; returns its id (see :meth:`FeedbackStore.record_prediction`)."""
    return open_store(db).record_prediction(model_id=model_id, weights_sha256=weights_sha256,
                                            image_sha256=image_sha256, outputs=outputs, created_by=created_by)


def get_prediction(db: StoreLocation, prediction_id: str) -> dict[str, Any] | None:
    """The recorded prediction (``outputs`` parsed), or None for an unknown id."""
    return open_store(db).get_prediction(prediction_id)


def register_session(db: StoreLocation, session_id: str, model_id: str, n_cases: int, seed: int,
                     started_by: str = "") -> dict[str, Any]:
    """:meth:`FeedbackStore.register_session` on the store at ``db``."""
    return open_store(db).register_session(session_id, model_id, n_cases, seed, started_by)


def submit(db: StoreLocation, fb: Feedback) -> int:
    """Store one submission; returns its row id (the same id again for a retry with the same idempotency key)."""
    return open_store(db).submit(fb)


def read_all(db: StoreLocation) -> pd.DataFrame:
    """Every stored row, oldest first; the same columns and dtypes on every backend."""
    return open_store(db).read_all()


def read_matching(db: StoreLocation, **equal: str) -> pd.DataFrame:
    """The stored rows whose columns equal ``equal`` (see :meth:`FeedbackStore.read_matching`)."""
    return open_store(db).read_matching(**equal)


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


def export_csv(db: StoreLocation, out: Path, df: pd.DataFrame | None = None) -> int:
    """Write every row (or ``df``, a selection of them) to a CSV file safe to open in a spreadsheet; returns the
    row count."""
    return write_csv(df, out) if df is not None else open_store(db).export_csv(out)  # rows given: store not opened


def write_csv(df: pd.DataFrame, out: Path) -> int:
    """``df`` as a CSV file safe to open in a spreadsheet (formulas neutralised); returns the row count."""
    out.parent.mkdir(parents=True, exist_ok=True)
    # CRLF rows (RFC 4180): a cell holding a line break (a comment's paragraphs) is then always quoted, so no carriage
    # return can start a row of its own in a spreadsheet
    neutralise_formulas(df).to_csv(out, index=False, lineterminator="\r\n")
    return len(df)
