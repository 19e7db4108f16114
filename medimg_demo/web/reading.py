"""Gradio handlers of the reading session and the feedback summary: start or resume a session, record the
reader's own call and the aided feedback, show and export the summary. Each ``MedimgError`` becomes a ``gr.Error``."""

from __future__ import annotations

import logging
import secrets

import gradio as gr
import pandas as pd

from ..errors import MedimgError
from ..feedback import export_csv, summarise
from ..paths import feedback_db, public_dir
from . import auth, files, session
from .catalog import model_labels
from .handlers import FEEDBACK_RESET, _user

log = logging.getLogger(__name__)


def _session_view(s: session.ReadingSession | None):  # noqa: ANN202
    """Progress text, case image, and visibility of the unaided / aided panels."""
    if s is None:
        return "", None, gr.update(visible=False), gr.update(visible=False)
    if s.done:
        return f"**Session complete** - {len(s.cases)} of {len(s.cases)} cases read. Thank you.", None, gr.update(visible=False), gr.update(visible=False)
    text = f"**Case {s.index + 1} of {len(s.cases)}** - session `{s.session_id}`, reader `{s.reader}`, model `{s.model_id}`"
    return text, files.png_file(session.session_case_image(s)), gr.update(visible=not s.revealed), gr.update(visible=s.revealed)


def session_start(reader: str, session_id: str, model_id: str | None, n_cases: float, seed: float,
                  request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
                  profile: gr.OAuthProfile | None = None):  # noqa: ANN201
    """Start or resume a reading session; with logins on, as the logged-in reader (a typed name is ignored)."""
    try:
        user = _user(request, profile, reader)
        s = session.start_session(user, session_id, model_id, int(n_cases), int(seed))
        s.created_by = user if auth.logins_on() else ""
    except MedimgError as exc:
        raise gr.Error(str(exc)) from None
    cfg_labels = model_labels(s.model_id)
    return (s, *_session_view(s), gr.update(choices=cfg_labels["type"], value=None),
            gr.update(choices=cfg_labels.get("stage") or [], value=None, visible=bool(cfg_labels.get("stage"))))


def session_unaided(s: session.ReadingSession | None, reader_type: str | None, reader_stage: str | None,
                    confidence: float | None):  # noqa: ANN201
    if s is None:
        raise gr.Error("Start the session first.")
    try:
        a = session.session_record_unaided(s, reader_type, reader_stage, int(confidence) if confidence else None)
    except MedimgError as exc:
        raise gr.Error(str(exc)) from None
    return (s, *_session_view(s), a.type_scores, a.stage_scores, a.stage_text, a.pathway_markdown,
            files.png_file(a.overlay_rgb))


def session_aided(s: session.ReadingSession | None, type_agree: str | None, stage_agree: str | None,
                  pathway_agree: str | None, corrected_type: str | None, corrected_stage: str | None,
                  heatmap_plausibility: float | None, confidence: float | None, comment: str | None):  # noqa: ANN201
    if s is None:
        raise gr.Error("Start the session first.")
    try:
        session.session_record_aided(
            s, type_agree=type_agree, stage_agree=stage_agree, pathway_agree=pathway_agree,
            corrected_type=corrected_type, corrected_stage=corrected_stage,
            heatmap_plausibility=heatmap_plausibility, confidence=confidence, comment=comment,
        )
    except MedimgError as exc:
        raise gr.Error(str(exc)) from None
    return (s, *_session_view(s), None, None, "", "", None,  # model outputs hidden again
            None, None, 3, *FEEDBACK_RESET)  # own-read and feedback forms reset


def _visible_rows(request: gr.Request | None, profile: gr.OAuthProfile | None) -> pd.DataFrame:
    """Every reader's rows for a session owner (or on a laptop without logins), else the caller's own."""
    return session.visible_feedback(_user(request, profile) if auth.logins_on() else "")


def feedback_summary(request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
                     profile: gr.OAuthProfile | None = None) -> pd.DataFrame:
    """The per-session summary of the feedback store (API: /feedback_summary): every reader's for session owners,
    the caller's own otherwise."""
    try:
        return summarise(_visible_rows(request, profile)).round(3)
    except MedimgError as exc:
        raise gr.Error(str(exc)) from None


def export_feedback(request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
                    profile: gr.OAuthProfile | None = None) -> str:
    """The feedback rows this caller may see as a CSV safe to open in a spreadsheet (API: /feedback_export)."""
    try:
        rows = _visible_rows(request, profile)
        out = public_dir() / "exports" / f"feedback-{secrets.token_hex(8)}.csv"
        export_csv(feedback_db(), out, rows)
        files.prune_exports()
        return str(out)
    except (MedimgError, OSError) as exc:
        raise gr.Error(str(exc) if isinstance(exc, MedimgError) else "The export could not be written; try again.") from None
