"""Reading sessions and feedback, free of Gradio: a reader's own call first, then the model's output for feedback.

Every reader of a session reads the same seeded case list; the state of one reader lives in the browser session.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import feedback
from ..errors import InputError
from ..explain.overlay import gray_to_rgb
from ..feedback.cases import case_list
from ..imaging.decode import read_file
from ..models.registry import get_model
from ..paths import data_root, feedback_db
from .analysis import Analysis, analyse


def _agree(choice: str | None) -> bool | None:
    return None if not choice else choice.lower().startswith("agree")


def feedback_from_prediction(
    prediction: dict[str, Any] | None,
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
    heatmap_plausibility: int | None = None,
    confidence: int | None = None,
    comment: str | None = None,
    truth_type: str | None = None,
    truth_stage: str | None = None,
    db: Path | None = None,
) -> int:
    """Store one feedback row for a prediction as returned by ``predict`` (its JSON); returns the row id."""
    if not prediction or "image_sha256" not in prediction:
        raise InputError("Run a prediction first: feedback is stored against the prediction shown.")
    model_id = str(prediction.get("model", ""))
    cfg = get_model(model_id)  # the weights hash comes from the registry, not from the client
    stage = prediction.get("stage") or {}
    fb = feedback.Feedback(
        reader=(reader or "").strip(),
        image_sha256=str(prediction["image_sha256"]),
        phase=phase,
        session_id=(session_id or "").strip()[:80],
        case_id=case_id,
        model_id=cfg.id,
        weights_sha256=cfg.weights_sha256 or "",
        pred_type=prediction.get("type", {}).get("label"),
        pred_type_probs=prediction.get("type", {}).get("probabilities"),
        pred_stage=stage.get("label"),
        pred_stage_probs=stage.get("probabilities"),
        reader_type=reader_type or None,
        reader_stage=reader_stage or None,
        type_agree=_agree(type_agree),
        stage_agree=_agree(stage_agree),
        pathway_agree=_agree(pathway_agree),
        corrected_type=corrected_type or None,
        corrected_stage=corrected_stage or None,
        heatmap_plausibility=int(heatmap_plausibility) if heatmap_plausibility else None,
        confidence=int(confidence) if confidence else None,
        comment=(comment or "").strip() or None,
        truth_type=truth_type,
        truth_stage=truth_stage,
    )
    return feedback.submit(db or feedback_db(), fb)


@dataclass
class ReadingSession:
    """One reader's progress through a session's fixed case list (kept in the browser session)."""
    reader: str
    session_id: str
    model_id: str
    cases: list[Any]
    index: int = 0
    revealed: bool = False
    prediction: dict[str, Any] | None = None

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
    feedback.Feedback(reader=(reader or "").strip(), image_sha256="0" * 64).validate()
    folder = data_root() / cfg.task
    if not (folder / "manifest.csv").is_file():
        raise InputError(f"No test cases found for {cfg.task} under {data_root()}; set MEDIMG_DATA_DIR.")
    cases = case_list(folder, cfg.task, n_cases=n_cases, seed=seed)
    done = feedback.read_all(db or feedback_db())
    done = done[(done["session_id"] == session_id.strip()) & (done["reader"] == reader.strip()) & (done["phase"] == "aided")]
    finished = set(done["case_id"])
    index = next((i for i, c in enumerate(cases) if c.case_id not in finished), len(cases))
    return ReadingSession(reader=reader.strip(), session_id=session_id.strip(), model_id=cfg.id, cases=cases, index=index)


def session_case_image(s: ReadingSession) -> np.ndarray:
    """The current case as the reader first sees it: the image alone, no model output."""
    return gray_to_rgb(read_file(s.case.path).pixels)


def session_record_unaided(s: ReadingSession, reader_type: str | None, reader_stage: str | None,
                           confidence: int | None, db: Path | None = None) -> Analysis:
    """Store the reader's own call, then run the model: returns what to reveal."""
    if s.done:
        raise InputError("This session is complete; start a new one.")
    if not reader_type:
        raise InputError("Record your own call (tumor type) before seeing the model's output.")
    a = analyse(s.case.path, s.model_id)
    pred = a.prediction.to_json()
    feedback_from_prediction(
        pred, s.reader, phase="unaided", session_id=s.session_id, case_id=s.case.case_id,
        reader_type=reader_type, reader_stage=reader_stage, confidence=confidence,
        truth_type=s.case.label, truth_stage=s.case.stage, db=db,
    )
    s.revealed, s.prediction = True, pred
    return a


def session_record_aided(s: ReadingSession, db: Path | None = None, **form: Any) -> None:
    """Store the feedback given after seeing the model, and move to the next case."""
    if s.done or not s.revealed or s.prediction is None:
        raise InputError("Record your own read of this case first; then the model's output is shown for feedback.")
    feedback_from_prediction(
        s.prediction, s.reader, phase="aided", session_id=s.session_id, case_id=s.case.case_id,
        truth_type=s.case.label, truth_stage=s.case.stage, db=db, **form,
    )
    s.index += 1
    s.revealed, s.prediction = False, None
