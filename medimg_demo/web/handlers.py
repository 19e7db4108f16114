"""The Gradio side of the web part: event handlers that call the Gradio-free views and turn every
``MedimgError`` into a ``gr.Error`` the user can act on. ``app.py`` wires them to the layout."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import gradio as gr

from ..errors import InputError, MedimgError, StoreError
from .refusal import refusal
from . import analysis, auth, fair_share, outputs, session, shown, uploads, view_store, viewer
from .catalog import answer_choices, model_choices, stage_caption
from .performance import performance_view

log = logging.getLogger(__name__)

ACCEPTED_HELP = ("PNG, JPEG or DICOM (.dcm or no extension). The upload is de-identified on arrival (DICOM "
                 "identifiers and image metadata dropped, file name discarded); only the cleaned copy is kept, for an hour at most.")
#: Where cleaned working copies of uploads go; None: Gradio's upload folder, so that Gradio hands out this one
#: copy (it never copies a file already in its cache) and prunes it with the rest of its cache.
WORK_DIR: Path | None = None
#: Largest frame number accepted from a client (the decoder then checks it against the file).
MAX_FRAME = 100_000
#: A blank feedback form (Analyse tab for each new result, reading session after each answer; the same fields in
#: the same order): no answers, no corrections, no ratings, no comment.
FEEDBACK_RESET = (None, None, None, None, None, None, None, "")


def _file_path(upload: Any) -> str:
    """gr.File gives a path string (or an object with .name in older clients)."""
    if upload is None:
        raise refusal("Upload a scan first: " + ACCEPTED_HELP)
    return str(getattr(upload, "name", upload))


def _frame_index(frame: float | None) -> int | None:
    """0-based frame from the 1-based number a client sends (None: the file's middle frame)."""
    if frame is None or frame == "":
        return None
    try:
        number = float(frame)
    except (TypeError, ValueError):
        raise InputError("The frame must be a whole number (1 for the first frame).") from None
    if not number.is_integer() or not 1 <= number <= MAX_FRAME:
        raise InputError(f"The frame must be a whole number from 1 to the file's frame count (at most {MAX_FRAME}).")
    return int(number) - 1


def _user(request: gr.Request | None, profile: gr.OAuthProfile | None, typed: str | None = None) -> str:
    """The reader: the logged-in identity when logins are on, else what was typed."""
    return auth.identity(request, profile, typed)


@fair_share.one_at_a_time
def predict(
    upload: Any,
    model_id: str | None,
    opacity: float = 0.45,
    frame: float | None = None,
    window: str | None = "File default",
    center: float | None = None,
    width: float | None = None,
    request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
    profile: gr.OAuthProfile | None = None,
):  # noqa: ANN201 - Gradio output tuple
    """Run the chosen model on the upload; InputError and friends become a gr.Error the user can act on.

    The prediction shown is recorded in the feedback store; its id goes out in the JSON (``prediction_id``), and
    feedback refers to it. Where the store cannot be written, the result is still shown, with the reason.
    """
    path = _file_path(upload)
    try:
        with uploads.used_up(path), fair_share.one_job(request, profile):  # a refused one too: the raw upload goes
            frame_index = _frame_index(frame)
            a = analysis.analyse(uploads.to_analyse(path, request, profile), model_id or None,
                                 analysis.opacity_value(opacity), frame_index, window, center, width)
    except MedimgError as exc:
        raise refusal(str(exc), exc) from None
    dw = a.view.default_window
    notes = "\n\n".join([a.status_markdown] * bool(a.status_markdown) + [f"⚠ {w}" for w in a.warnings])
    shown = a.prediction.to_json()
    try:
        created_by = _user(request, profile) if auth.logins_on() else ""
    except MedimgError:
        created_by = ""  # Hugging Face sign-in: analysing is open, feedback needs the sign-in
    try:
        shown["prediction_id"] = session.record_prediction(shown, created_by)
    except StoreError as exc:
        shown["prediction_id"] = None
        notes = "\n\n".join(n for n in (notes, f"⚠ Feedback cannot be given on this result: {exc}") if n)
    image_file, overlay_file = outputs.png_file(a.pictures.image), outputs.png_file(a.pictures.overlay)
    return (
        a.type_display,  # readable class names on screen; the JSON (``shown``) keeps the raw labels
        gr.update(value=a.stage_display, label=stage_caption(a.prediction.model_id)),
        a.stage_text,
        a.pathway_markdown,
        image_file,
        overlay_file,
        a.info_markdown,
        shown,
        view_store.keep(dataclasses.replace(a.view, created_by=created_by)),  # a key; the view is bound to the login
        gr.update(value=a.frame_index + 1, visible=a.n_frames > 1, label=f"Frame (1-{a.n_frames}; Enter or Tab to show)"),
        notes,
        gr.update(value=round(dw[0], 2) if dw else None),  # none: the last file's window does not stay in the boxes
        gr.update(value=round(dw[1], 2) if dw else None),
        *viewer.after_analysis(a, image_file, overlay_file),
    )


def _suggested(prediction: Any) -> tuple[str, str] | None:
    """(model id, name in the model list) of the model a shown prediction suggests, if it names a bundled one (any
    other input: None)."""
    model = prediction.get("suggested_model") if isinstance(prediction, dict) else None
    names = {mid: label for label, mid in model_choices()}
    return (model, names[model]) if isinstance(model, str) and model in names else None


def suggestion(prediction: Any):  # noqa: ANN201
    """Show the one-click switch when a refused image fits another bundled model, named as the model list names it
    ("Brain MRI v5 (default)")."""
    suggested = _suggested(prediction)
    if not suggested:
        return gr.update(visible=False, value="Switch model")
    return gr.update(visible=True, value=f"Switch to {suggested[1]} and analyse")


def switch_model(prediction: Any):  # noqa: ANN201
    """The suggested model, for the model dropdown."""
    suggested = _suggested(prediction)
    return suggested[0] if suggested else gr.skip()


clear_outputs = viewer.clear_outputs  # every Analyse output blank (the viewer's too): see web/viewer.py
redraw = viewer.redraw


def preset_values(view: analysis.View | None, window: str | None,
                  request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
                  profile: gr.OAuthProfile | None = None):  # noqa: ANN201
    """Show the centre/width of the chosen preset in the manual boxes (owner-checked: another login on a borrowed
    page learns nothing of the file's window)."""
    view = viewer.own_view(view, request, profile)
    w = view.window_for(window, None, None) if view is not None else None
    if w is None and view is not None and window == "File default" and view.default_window:
        w = view.default_window
    if w is None:
        return gr.skip(), gr.skip()
    return w[0], w[1]


@fair_share.one_at_a_time
def rename_upload(upload: Any,
                  request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
                  profile: gr.OAuthProfile | None = None):  # noqa: ANN201
    """The upload handler: read the raw upload once, delete it (its name is often a patient's) and keep only the
    cleaned bytes under a random name; a non-image is refused and not kept. In a server only a raw upload is taken
    (called with a working copy, an example or someone's output, it refuses and deletes nothing); outside a server,
    the file handed over is consumed."""
    if upload is None:
        return None
    src = _file_path(upload)
    consume = uploads.is_raw_upload(src) or not uploads.in_server()
    if not consume:  # the page sends a fresh upload only; another file would be copied again, 100 MB a call
        raise refusal("Upload the scan itself: only a file just uploaded is cleaned and kept.")
    try:
        data = uploads.read_upload(src, consume=consume)  # read (and the raw file deleted) even if refused below
        with fair_share.one_job(request, profile):
            clean, ext = uploads.clean_upload(data)
    except MedimgError as exc:
        raise refusal(str(exc), exc) from None
    try:
        owner = _user(request, profile) if auth.logins_on() else ""  # only this login may use the copy
    except MedimgError:
        owner = ""  # Hugging Face sign-in not given: analysing is open
    return str(uploads.working_copy(clean, ext, WORK_DIR, owner))


AGREE = list(session.AGREE)
TYPE_QUESTION = "Tumor type"
#: the type question for a result that named no type (refused, or indeterminate between its top two)
NO_TYPE_QUESTION = ("The model named no tumor type: Agree if naming none was right; Disagree and choose the type "
                    "below if it should have named one")


def feedback_choices(prediction: dict | None) -> tuple[dict, ...]:
    """The feedback form for the result shown (``prediction``: its JSON), in the order of the form's first six fields:
    the type question (worded for a result that named no type), the stage question only where a stage was shown (a
    stage head's call or a size category), the pathway question only where a pathway was shown, the correction lists
    (the model's types under readable names; its stages, hidden for a model without a stage head) and the heatmap
    rating only where a heatmap was drawn. A refused or indeterminate result names its model too (feedback on it is
    stored: was naming no type right?); without a result, or for an id no model has, the form as it started."""
    model_id = prediction.get("model") if isinstance(prediction, dict) else None
    try:
        types, stages = answer_choices(model_id) if isinstance(model_id, str) and model_id else ([], [])
    except MedimgError:  # not a served model: nothing to choose (the server refuses feedback on it anyway)
        types, stages = [], []
    known = bool(types)
    named = shown.gave_type(prediction) or not known
    asked = shown.gave_stage(prediction)  # no stage shown (indeterminate, refused): no stage to correct either
    return (gr.update(value=None, label=TYPE_QUESTION if named else NO_TYPE_QUESTION),
            gr.update(value=None, visible=asked or not known),
            gr.update(value=None, visible=shown.gave_pathway(prediction) or not known),
            gr.update(choices=types, value=None),
            gr.update(choices=stages, value=None, visible=(bool(stages) and asked) or not known),
            gr.update(value=None, visible=shown.gave_heatmap(prediction) or not known))


def feedback_shown(prediction: dict | None):  # noqa: ANN201 - Gradio output
    """The feedback form only with a result the server recorded (its ``prediction_id``): before any analysis, after a
    refused upload (not an image), or where the store could not record the result (the notes say why), there is nothing to answer."""
    return gr.update(visible=isinstance(prediction, dict) and session.prediction_id_of(prediction) is not None)


def submit_feedback(prediction: dict | str | None, reader: str, session_id: str, type_agree: str | None,
                    stage_agree: str | None, pathway_agree: str | None, corrected_type: str | None,
                    corrected_stage: str | None, heatmap_plausibility: float | None, confidence: float | None,
                    comment: str | None, idempotency_key: str | None = None,
                    request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
                    profile: gr.OAuthProfile | None = None) -> str:
    """Store structured feedback on the prediction shown (API: /feedback).

    ``prediction``: the JSON the app returned (only its ``prediction_id`` is read) or that id. The reader is the
    logged-in user when logins are on. ``idempotency_key``: send the same key again after a lost answer and the
    row already stored is returned, not a duplicate.
    """
    try:
        user = _user(request, profile, reader)
        row = session.feedback_from_prediction(
            prediction, user, session_id=session_id, type_agree=type_agree, stage_agree=stage_agree,
            pathway_agree=pathway_agree, corrected_type=corrected_type, corrected_stage=corrected_stage,
            heatmap_plausibility=heatmap_plausibility, confidence=confidence, comment=comment,
            idempotency_key=idempotency_key, check_owner=auth.logins_on(),
        )
    except MedimgError as exc:
        raise refusal(str(exc), exc) from None
    return f"Thank you - feedback #{row} stored (image hash and model version only; no image, no file name)."


def show_performance(model_id: str | None):  # noqa: ANN201
    """Read the cached evaluation of this model (never evaluates on a page load)."""
    try:
        out = performance_view(model_id)
    except MedimgError as exc:
        raise refusal(str(exc), exc) from None
    stage = gr.update(value=out["stage"], visible=not out["stage"].empty)
    gallery = [(outputs.publish(path), caption) for path, caption in out["gallery"] or []]  # served from public/
    return (out["header"], out["overall"], out["per_class"], stage, out["confusion"], out["roc"],
            out["reliability"], out["explain"], gr.update(value=gallery, label=out["gallery_label"]))
