"""Gradio handlers of the reading session and the feedback summary: start or resume a session, record the
reader's own call and the aided feedback, show and export the summary. Each ``MedimgError`` becomes a ``gr.Error``."""

from __future__ import annotations

import logging
import secrets
import threading
from typing import Any

import gradio as gr
import pandas as pd

from ..errors import InputError, MedimgError
from ..feedback import export_csv, summarise
from ..feedback.reader_study import CANNOT_ASSESS, for_reader
from ..paths import feedback_db
from .refusal import refusal
from . import answered, auth, export_owners, outputs, session, session_view, shown, study_view
from .catalog import answer_choices, model_name, stage_caption
from .handlers import FEEDBACK_RESET, _user
from .markdown_text import code_span

log = logging.getLogger(__name__)


def _session_view(s: session.ReadingSession | None):  # noqa: ANN202
    """Progress text, case image, and visibility of the unaided / aided panels."""
    if s is None:
        return "", None, gr.update(visible=False), gr.update(visible=False)
    if s.done:
        where = ("The session's results, your own reads beside your aided answers, are in the **Feedback summary** "
                 "tab." if auth.sees_everyone(s.reader) else "Your agreement with the model is in the **Feedback "
                 "summary** tab; accuracy against the truth is shown to the session's owners.")
        done = f"**Session complete** - {len(s.cases)} of {len(s.cases)} cases read. Thank you. {where}"
        return done, None, gr.update(visible=False), gr.update(visible=False)
    text = (f"**{_case_of(s)}** - session {code_span(s.session_id)}, reader {code_span(s.reader)}, "
            f"model {model_name(s.model_id) or code_span(s.model_id)}")
    image = session_view.render_case(session.session_pixels(s), s.display)
    return text, outputs.png_file(image), gr.update(visible=not s.revealed), gr.update(visible=s.revealed)


def _case_of(s: session.ReadingSession) -> str:
    """"Case 3 of 20": the case in hand."""
    return f"Case {s.index + 1} of {len(s.cases)}"


def _case_panel(s: session.ReadingSession | None):  # noqa: ANN202
    """The case, its heatmap and the display controls: shown only while a case is being read."""
    return gr.update(visible=s is not None and not s.done)


def _whole(value: Any, what: str) -> int:
    """A whole number a client sent (the page sends one; an API client may send none, text or NaN)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"The {what} must be a whole number.") from None
    if not number.is_integer():
        raise InputError(f"The {what} must be a whole number.")
    return int(number)


def session_start(reader: str, session_id: str, model_id: str | None, n_cases: float, seed: float,
                  request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
                  profile: gr.OAuthProfile | None = None):  # noqa: ANN201
    """Start or resume a reading session; with logins on, as the logged-in reader (a typed name is ignored)."""
    try:
        user = _user(request, profile, reader)
        s = session.start_session(user, session_id, model_id, _whole(n_cases, "number of cases"), _whole(seed, "seed"))
        s.created_by = user if auth.logins_on() else ""
    except MedimgError as exc:
        raise refusal(str(exc), exc) from None
    types, stages = answer_choices(s.model_id)
    return (s, *_session_view(s), gr.update(choices=[*types, ("Cannot assess", CANNOT_ASSESS)], value=None),
            gr.update(choices=stages, value=None, visible=bool(stages)),
            gr.update(choices=types, value=None), gr.update(choices=stages, value=None, visible=bool(stages)),
            gr.update(visible=bool(stages)), _case_panel(s))


def session_unaided(s: session.ReadingSession | None, reader_type: str | None, reader_stage: str | None,
                    confidence: float | None,
                    request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
                    profile: gr.OAuthProfile | None = None):  # noqa: ANN201
    if s is None:
        raise refusal("Start the session first.")
    try:
        auth.check_reader(request, profile, s.reader)  # still the reader the session was started as
        with _answer_lock(s):
            a = session.session_record_unaided(s, reader_type, reader_stage, int(confidence) if confidence else None)
    except MedimgError as exc:
        raise refusal(str(exc), exc) from None
    heat = session_view.render_case(session.session_pixels(s), s.display, s.heatmap)
    staged = shown.gave_stage(s.prediction)  # the aided form asks only about what the model showed (after the panel,
    return (s, *_session_view(s), a.type_display,  # so no API output index moved)
            gr.update(value=a.stage_display, label=stage_caption(s.model_id)),
            a.stage_text, a.pathway_markdown, gr.update(value=outputs.png_file(heat), visible=True),
            session_view.compare_markdown(s.own_read, s.prediction, s.model_id, _case_of(s)),
            _case_panel(s),
            gr.update(visible=staged), gr.update(visible=staged), gr.update(visible=shown.gave_pathway(s.prediction)),
            gr.update(visible=shown.gave_heatmap(s.prediction)))


#: How many outputs :func:`session_unaided` (and so :func:`session_resume`) gives.
RESUME_OUTPUTS = 16


def session_resume(s: session.ReadingSession | None,
                   request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
                   profile: gr.OAuthProfile | None = None):  # noqa: ANN201
    """After a start or resume: where this reader's own read of the case in hand is stored already (the page was
    reloaded, or another tab, after the model was shown), show the model beside it for the aided answer, as
    :func:`session_unaided` does (the model runs again and its prediction is recorded; the own read is not stored
    twice); else change nothing."""
    own = None if s is None or s.done or s.revealed else answered.stored_own_read(s.session_id, s.reader,
                                                                                 s.case.case_id)
    if own is None:
        return tuple(gr.skip() for _ in range(RESUME_OUTPUTS))
    return session_unaided(s, own["type"], own["stage"], own["confidence"], request, profile)


def session_aided(s: session.ReadingSession | None, type_agree: str | None, stage_agree: str | None,
                  pathway_agree: str | None, corrected_type: str | None, corrected_stage: str | None,
                  heatmap_plausibility: float | None, confidence: float | None, comment: str | None,
                  request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
                  profile: gr.OAuthProfile | None = None):  # noqa: ANN201
    if s is None:
        raise refusal("Start the session first.")
    try:
        auth.check_reader(request, profile, s.reader)
        with _answer_lock(s):  # a doubled "next case" (an API client; the page sends it once) moves one case on
            session.session_record_aided(
                s, type_agree=type_agree, stage_agree=stage_agree, pathway_agree=pathway_agree,
                corrected_type=corrected_type, corrected_stage=corrected_stage,
                heatmap_plausibility=heatmap_plausibility, confidence=confidence, comment=comment,
            )
    except MedimgError as exc:
        raise refusal(str(exc), exc) from None
    return (s, *_session_view(s), None, None, "", "", gr.update(value=None, visible=False), "",  # model's: hidden
            None, None, None, *FEEDBACK_RESET, _case_panel(s))  # own-read and feedback forms reset


#: One answer at a time per reading session (locks striped by the session object, so their number is bounded).
_ANSWER_LOCKS = tuple(threading.Lock() for _ in range(64))


def _answer_lock(s: session.ReadingSession) -> threading.Lock:
    return _ANSWER_LOCKS[id(s) % len(_ANSWER_LOCKS)]


def _marks(problems: dict[str, str], names: list[str]) -> list[dict]:
    """One gr.validate per input, in order: the message beside the field that lacks an answer."""
    return [gr.validate(name not in problems, problems.get(name, "")) for name in names]


def validate_read(s: session.ReadingSession | None, reader_type: str | None, reader_stage: str | None,
                  confidence: float | None) -> list[dict]:
    """Before /session_read runs: a missing answer is shown beside its field and nothing is sent to the model
    (API callers get HTTP 422 with the same message; session_unaided checks again)."""
    problems = {} if s is None or s.done else session.unaided_problems(s, reader_type, reader_stage)
    return _marks(problems, ["state", "reader_type", "reader_stage", "confidence"])


def validate_aided(s: session.ReadingSession | None, type_agree: str | None, stage_agree: str | None,
                   pathway_agree: str | None, corrected_type: str | None, *rest: object) -> list[dict]:
    """Before /session_feedback runs: agree/disagree on the type, and a type when disagreeing."""
    problems = {} if s is None or not s.revealed else session.aided_problems(s, type_agree, corrected_type)
    return _marks(problems, ["state", "type_agree", "stage_agree", "pathway_agree", "corrected_type",
                             *[f"other{i}" for i in range(len(rest))]])


def session_redraw(s: session.ReadingSession | None, level: float, width: float, zoom: str, pan_x: float,
                   pan_y: float, request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
                   profile: gr.OAuthProfile | None = None):  # noqa: ANN201
    """New display window or zoom: redraw the case (and the heatmap once revealed) without running the model; the
    settings stay for the next cases."""
    if s is None or s.done:
        return gr.skip(), gr.skip()
    try:
        auth.check_reader(request, profile, s.reader)  # the page's state, not another login's
        shown = (s.index, s.revealed)
        s.display = session_view.display_settings(level, width, zoom, pan_x, pan_y)
        image = outputs.png_file(session_view.render_case(session.session_pixels(s), s.display))
        heat = (outputs.png_file(session_view.render_case(session.session_pixels(s), s.display, s.heatmap))
                if s.revealed else gr.skip())
    except MedimgError as exc:
        raise refusal(str(exc), exc) from None
    if (s.index, s.revealed) != shown:  # the next case (or the reveal) came meanwhile: its own event draws it
        return gr.skip(), gr.skip()
    return image, heat


#: This process's key for readers' opaque case ids (an unkeyed hash was inverted from guessed file names).
_CASE_KEY = secrets.token_bytes(32)


def _caller(request: gr.Request | None, profile: gr.OAuthProfile | None) -> str:
    return _user(request, profile) if auth.logins_on() else ""


def _visible_rows(request: gr.Request | None, profile: gr.OAuthProfile | None) -> pd.DataFrame:
    """Every reader's rows for a session owner (or on a laptop without logins), else the caller's own."""
    return session.visible_feedback(_caller(request, profile))


def _to_take_away(df: pd.DataFrame, request: gr.Request | None, profile: gr.OAuthProfile | None) -> pd.DataFrame:
    """An export as the caller may take it away: whole for owners, else without the truth (``for_reader``)."""
    return df if auth.sees_everyone(_caller(request, profile)) else for_reader(df, _CASE_KEY)


def feedback_summary(request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
                     profile: gr.OAuthProfile | None = None) -> pd.DataFrame:
    """The per-session summary of the feedback store (API: /feedback_summary): every reader's for session owners,
    the caller's own otherwise."""
    try:
        table = summarise(_visible_rows(request, profile)).round(3)
        if auth.sees_everyone(_caller(request, profile)):
            return table
        return table.drop(columns=[c for c in table.columns if c.endswith("accuracy")])  # see study_view.OWNERS_ONLY
    except MedimgError as exc:
        raise refusal(str(exc), exc) from None


def summary_view(chosen: str | None = None,
                 request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
                 profile: gr.OAuthProfile | None = None):  # noqa: ANN201
    """The Feedback summary tab, readable: the reader-study table, its legend, the session choice, the MRMC verdict
    and the accuracy plot of the chosen session, and the per-output feedback table."""
    try:  # without accuracy for a reader who is not an owner (study_view.OWNERS_ONLY says why)
        owner = auth.sees_everyone(_caller(request, profile))
        v = study_view.build(_visible_rows(request, profile), chosen, accuracy=owner,
                             planned=session.session_size_of if owner else None)
    except MedimgError as exc:
        raise refusal(str(exc), exc) from None
    # a reader who is not an owner: no empty accuracy table and plot frame under the note that says why
    return (gr.update(value=v.table, visible=owner), v.legend if owner else "",
            gr.update(choices=v.sessions, value=v.session), v.verdict, gr.update(value=v.figure, visible=owner),
            v.outputs, gr.update() if owner else gr.update(open=True))  # their agreement: what they may see


def export_reader_study(request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
                        profile: gr.OAuthProfile | None = None) -> str:
    """The per-case reader-study table (reader, case, truth, unaided / model / aided call, correct flags,
    confidence) this caller may see, as a CSV safe to open in a spreadsheet (API: /reader_study_export); a reader
    who is not a session owner gets their own rows without the truth (``for_reader``)."""
    try:
        table = _to_take_away(study_view.case_rows(_visible_rows(request, profile)), request, profile)
        out = outputs.export_path("reader-study")
        export_csv(feedback_db(), out, table)  # the rows are given: formulas neutralised, the store not read again
        export_owners.record(out, _caller(request, profile))  # served to this login only
        outputs.prune_exports()
        return str(out)
    except (MedimgError, OSError) as exc:
        msg = str(exc) if isinstance(exc, MedimgError) else "The export could not be written; try again."
        raise refusal(msg, exc) from None


def export_feedback(request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
                    profile: gr.OAuthProfile | None = None) -> str:
    """The feedback rows this caller may see as a CSV safe to open in a spreadsheet (API: /feedback_export)."""
    try:
        rows = _to_take_away(_visible_rows(request, profile), request, profile)
        out = outputs.export_path("feedback")
        export_csv(feedback_db(), out, rows)
        export_owners.record(out, _caller(request, profile))  # served to this login only
        outputs.prune_exports()
        return str(out)
    except (MedimgError, OSError) as exc:
        msg = str(exc) if isinstance(exc, MedimgError) else "The export could not be written; try again."
        raise refusal(msg, exc) from None
