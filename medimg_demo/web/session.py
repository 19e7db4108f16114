"""Reading sessions and feedback, free of Gradio: a reader's own call first, then the model's output for feedback.

Every reader of a session reads the same seeded case list; the state of one reader lives in the browser session.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import feedback
from ..errors import InputError
from ..feedback.cases import case_list, check_parameters, mismatch, session_size
from ..feedback.reader_study import CANNOT_ASSESS, label_name
from ..imaging.decode import read_file
from ..models.registry import get_model
from ..paths import data_root, feedback_store
from . import auth
from .analysis import Analysis, analyse
from .answered import check_not_answered_elsewhere
from .catalog import model_name
from .session_view import DEFAULT_DISPLAY
from .shown import gave_heatmap, gave_pathway, gave_stage


AGREE = ("Agree", "Disagree")


def _agree(choice: str | None) -> bool | None:
    if not choice:
        return None
    if choice not in AGREE:
        raise InputError("Answer 'Agree' or 'Disagree' (or leave the answer empty).")
    return choice == "Agree"


def _label(value: str | None, labels: list[str] | None, what: str, also: tuple[str, ...] = ()) -> str | None:
    """A reader's label must be one of the model's labels (never free text stored as a class), or one of ``also``
    (the unaided read's "cannot assess")."""
    if value is not None and not isinstance(value, str):
        raise InputError(f"The {what} must be text.")
    value = (value or "").strip() or None
    if value is not None and value not in (labels or []) and value not in also:
        allowed = ", ".join(labels or []) or "none (this model does not stage)"
        raise InputError(f"The {what} must be one of this model's labels: {allowed}.")
    return value


def prediction_id_of(prediction: Any) -> str | None:
    """The server's id of the prediction shown: from the prediction JSON the app returned, or the id itself.
    Nothing else of a client-sent prediction is trusted."""
    if isinstance(prediction, dict):
        prediction = prediction.get("prediction_id")
    return prediction.strip() if isinstance(prediction, str) and prediction.strip() else None


def record_prediction(prediction: dict[str, Any], created_by: str = "", db: Path | None = None) -> str:
    """Record a prediction the server is about to show (what feedback will refer to); returns its id."""
    cfg = get_model(prediction.get("model"))
    return feedback.record_prediction(
        db or feedback_store(), model_id=cfg.id, weights_sha256=cfg.weights_sha256 or "",
        image_sha256=str(prediction.get("image_sha256") or ""), outputs=prediction, created_by=created_by,
    )


def session_key(session_id: str, reader: str, case_id: str, phase: str) -> str:
    """The idempotency key of a reading-session answer: one row per session, reader, case and phase, so a retry
    (or a resume after a lost answer) never stores a duplicate."""
    return "rs-" + hashlib.sha256("\x1f".join((session_id, reader, case_id, phase)).encode()).hexdigest()[:40]


def feedback_from_prediction(
    prediction_id: str | dict[str, Any] | None,
    reader: str,
    *,
    phase: str = "free",
    session_id: str = "",
    case_id: str = "",
    type_agree: str | None = None,
    stage_agree: str | None = None,
    pathway_agree: str | None = None,
    corrected_type: str | None = None,
    corrected_stage: str | None = None,
    reader_type: str | None = None,
    reader_stage: str | None = None,
    heatmap_plausibility: int | float | None = None,
    confidence: int | float | None = None,
    comment: str | None = None,
    truth_type: str | None = None,
    truth_stage: str | None = None,
    idempotency_key: str | None = None,
    check_owner: bool = False,
    db: Path | None = None,
) -> int:
    """Store one feedback row on a prediction the server recorded (by its id); returns the row id.

    The model's side (model, weights, image hash, labels, probabilities) comes from the server's record; the
    reader's labels must be labels of that model. ``check_owner``: with logins on, only the reader the prediction
    was shown to may give feedback on it.
    """
    store = db or feedback_store()
    pid = prediction_id_of(prediction_id)
    if pid is None:
        raise InputError("Run a prediction first: feedback is stored against the prediction shown.")
    answers = (type_agree, stage_agree, pathway_agree, corrected_type, corrected_stage, heatmap_plausibility, confidence)
    if phase == "free" and all(a in (None, "") for a in answers) and not (isinstance(comment, str) and comment.strip()):
        raise InputError("Give at least one answer (agree or disagree, your type, a rating or a comment) before "
                         "submitting: an empty form is not stored.")
    rec = feedback.get_prediction(store, pid)
    if rec is None:
        raise InputError("This prediction is not known to this server: run the prediction again and give feedback "
                         "on what is shown.")
    if check_owner and rec["created_by"] and rec["created_by"] != reader:
        raise InputError("This prediction was shown to another reader; give feedback on your own predictions.")
    cfg = get_model(rec["model_id"])
    stage_labels = cfg.stage_labels
    if comment is not None and not isinstance(comment, str):
        raise InputError("The comment must be text.")
    fb = feedback.Feedback(
        reader=(reader or "").strip(),
        image_sha256=rec["image_sha256"],
        phase=phase,
        session_id=(session_id or "").strip(),
        case_id=case_id,
        reader_type=_label(reader_type, cfg.type_labels, "type you read",
                           (CANNOT_ASSESS,) if phase == "unaided" else ()),
        reader_stage=_label(reader_stage, stage_labels, "stage you read"),
        type_agree=_agree(type_agree),
        stage_agree=_agree(stage_agree) if gave_stage(rec["outputs"]) else None,  # none shown: nothing to agree with
        pathway_agree=_agree(pathway_agree) if gave_pathway(rec["outputs"]) else None,
        corrected_type=_label(corrected_type, cfg.type_labels, "corrected type"),
        corrected_stage=_label(corrected_stage, stage_labels, "corrected stage") if gave_stage(rec["outputs"]) else None,
        heatmap_plausibility=(heatmap_plausibility or None) if gave_heatmap(rec["outputs"]) else None,
        confidence=confidence or None,
        comment=(comment or "").strip() or None,
        truth_type=truth_type,
        truth_stage=truth_stage,
        prediction_id=pid,
        idempotency_key=(idempotency_key or "").strip() or None,
    )
    return feedback.submit(store, fb)


def visible_feedback(user: str, db: Path | None = None) -> pd.DataFrame:
    """The feedback rows ``user`` may see: every reader's for a session owner (and on a laptop without logins),
    else only their own."""
    store = db or feedback_store()
    return feedback.read_all(store) if auth.sees_everyone(user) else feedback.read_matching(store, reader=user)


def session_size_of(session_id: str, db: Path | None = None) -> int | None:
    """A reading session's number of cases (see :func:`feedback.cases.session_size`), None for a name never started:
    only the session on screen, as working out every session's took 0.13 ms each per summary refresh."""
    plan = feedback.open_store(db or feedback_store()).session_plans().get(session_id)
    return session_size(data_root(), *plan) if plan else None


@dataclass
class ReadingSession:
    """One reader's progress through a session's fixed case list (kept in the browser session)."""
    reader: str
    session_id: str
    model_id: str
    cases: list[Any]
    index: int = 0
    revealed: bool = False
    prediction: dict[str, Any] | None = None  # as shown, with the server's "prediction_id"
    created_by: str = ""  # the logged-in reader (recorded with each prediction); "" without logins
    own_read: dict[str, Any] | None = None  # the reader's unaided answer on the current case (shown on reveal)
    heatmap: np.ndarray | None = None  # the model's heatmap on the current case, once revealed
    display: dict[str, Any] | None = None  # the reader's display settings: the window kept from case to case, the
    # zoom not (a next case opening as the last one's 2x crop hid most of it during the own read)

    @property
    def done(self) -> bool:
        return self.index >= len(self.cases)

    @property
    def case(self) -> Any:
        return self.cases[self.index]


def start_session(reader: str, session_id: str, model_id: str | None, n_cases: int = 20, seed: int = 0,
                  db: Path | None = None) -> ReadingSession:
    """The session's case list (same for every reader with the same model, size and seed), resumed where this
    reader left off."""
    cfg = get_model(model_id)
    if not (session_id or "").strip():
        raise InputError("Name the session (for example 'lung-2026-11-24') so that readers can be compared.")
    feedback.Feedback(reader=(reader or "").strip(), image_sha256="0" * 64, session_id=session_id.strip()).validate()
    folder = data_root() / cfg.task
    if not (folder / "manifest.csv").is_file():
        raise InputError(f"No test cases found for {cfg.task} under {data_root()}; set MEDIMG_DATA_DIR.")
    check_parameters(n_cases, seed)
    started = feedback.register_session(db or feedback_store(), session_id.strip(), cfg.id, n_cases, seed, reader.strip())
    if (refused := mismatch(started, cfg.id, n_cases, seed, model_name)) is not None:
        raise refused
    cases = case_list(folder, cfg.task, n_cases=n_cases, seed=seed)
    done = feedback.read_matching(db or feedback_store(), session_id=session_id.strip(), reader=reader.strip(),
                                  phase="aided")
    finished = set(done["case_id"])
    index = next((i for i, c in enumerate(cases) if c.case_id not in finished), len(cases))
    return ReadingSession(reader=reader.strip(), session_id=session_id.strip(), model_id=cfg.id, cases=cases, index=index)


@functools.lru_cache(maxsize=32)
def _case_pixels(path: str) -> np.ndarray:
    pixels = read_file(path).pixels
    pixels.setflags(write=False)  # shared by every page reading this case
    return pixels


def session_pixels(s: ReadingSession) -> np.ndarray:
    """The current case's grey pixels in [0, 1]: decoded once for all pages (every reader of a session reads the
    same cases), in a cache of 32 cases, not in each page's state (1,000 pages kept up to 1,000 decoded images)."""
    return _case_pixels(str(s.case.path))


def unaided_problems(s: ReadingSession, reader_type: str | None, reader_stage: str | None) -> dict[str, str]:
    """What the unaided read still lacks, by field: a type (or "cannot assess") and, where the model has a stage
    head, a stage."""
    out: dict[str, str] = {}
    chosen = reader_type.strip() if isinstance(reader_type, str) else ""
    if not chosen:
        out["reader_type"] = "Choose the tumor type you read (or 'Cannot assess') before the model's output is shown."
    if get_model(s.model_id).stage_labels and chosen != CANNOT_ASSESS and not (isinstance(reader_stage, str)
                                                                               and reader_stage.strip()):
        out["reader_stage"] = "Choose the stage you read as well (this model also suggests a stage)."
    return out


def aided_problems(s: ReadingSession, type_agree: str | None, corrected_type: str | None) -> dict[str, str]:
    """What the aided answer still lacks, by field: agree/disagree on the type, and the reader's type when
    disagreeing. Where the model gave no type (refused or indeterminate), 'Agree' keeps the reader's own call."""
    model_type = ((s.prediction or {}).get("type") or {}).get("label")
    corrected = corrected_type.strip() if isinstance(corrected_type, str) else ""
    if type_agree not in AGREE:
        return {"type_agree": "Answer whether you agree with the model's tumor type (Agree or Disagree)"
                + ("." if model_type else ": it gave none for this case; 'Agree' keeps your own call.")}
    if type_agree == "Disagree" and not corrected:
        return {"corrected_type": "You disagree with the model's type: choose the type you read instead."}
    if type_agree == "Agree" and model_type and corrected and corrected != model_type:
        return {"corrected_type": f"You agree with the model's type ({label_name(s.model_id, model_type)}) but chose "
                "another corrected type: choose 'Disagree', or clear the corrected type."}
    return {}


def _refuse(problems: dict[str, str]) -> None:
    if problems:
        raise InputError(" ".join(problems.values()))


def session_record_unaided(s: ReadingSession, reader_type: str | None, reader_stage: str | None,
                           confidence: int | None, db: Path | None = None) -> Analysis:
    """Store the reader's own call, then run the model: returns what to reveal."""
    if s.done:
        raise InputError("This session is complete; start a new one.")
    _refuse(unaided_problems(s, reader_type, reader_stage))
    check_not_answered_elsewhere(s.session_id, s.reader, s.case.case_id, "unaided",
                                 {"reader_type": reader_type, "reader_stage": reader_stage or None}, db)
    a = analyse(s.case.path, s.model_id)
    pred = a.prediction.to_json()
    pred["prediction_id"] = record_prediction(pred, s.created_by, db)
    feedback_from_prediction(
        pred, s.reader, phase="unaided", session_id=s.session_id, case_id=s.case.case_id,
        reader_type=reader_type, reader_stage=reader_stage, confidence=confidence,
        truth_type=s.case.label, truth_stage=s.case.stage,
        idempotency_key=session_key(s.session_id, s.reader, s.case.case_id, "unaided"), db=db,
    )
    s.revealed, s.prediction, s.heatmap = True, pred, a.prediction.heatmap
    s.own_read = {"type": reader_type, "stage": reader_stage or None, "confidence": confidence}
    return a


def session_record_aided(s: ReadingSession, db: Path | None = None, **form: Any) -> None:
    """Store the feedback given after seeing the model, and move to the next case."""
    if s.done or not s.revealed or s.prediction is None:
        raise InputError("Record your own read of this case first; then the model's output is shown for feedback.")
    _refuse(aided_problems(s, form.get("type_agree"), form.get("corrected_type")))
    feedback_from_prediction(
        s.prediction, s.reader, phase="aided", session_id=s.session_id, case_id=s.case.case_id,
        truth_type=s.case.label, truth_stage=s.case.stage,
        idempotency_key=session_key(s.session_id, s.reader, s.case.case_id, "aided"), db=db, **form,
    )
    s.index += 1
    s.revealed, s.prediction, s.heatmap, s.own_read = False, None, None, None
    if s.display:
        s.display = {**s.display, **{k: DEFAULT_DISPLAY[k] for k in ("zoom", "pan_x", "pan_y")}}
