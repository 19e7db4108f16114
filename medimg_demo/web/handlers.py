"""The Gradio side of the web part: event handlers that call the Gradio-free views and turn every
``MedimgError`` into a ``gr.Error`` the user can act on. ``app.py`` wires them to the layout."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from ..errors import MedimgError
from ..feedback import read_all, summarise
from ..paths import feedback_db, work_dir
from . import analysis, files, session
from .catalog import model_labels
from .performance import performance_view

log = logging.getLogger(__name__)

ACCEPTED_HELP = "PNG, JPEG or DICOM (.dcm or no extension). DICOM identifiers are dropped on upload and never shown or stored."
#: Where renamed uploads and de-identified copies go: inside the one folder the deployer sets (MEDIMG_STATE_DIR).
WORK_DIR = work_dir()
#: What feedback_fields() shows again after a submission: no answers, sliders at 3, empty texts.
FEEDBACK_RESET = (None, None, None, "", "", 3, 3, "")


def _file_path(upload: Any) -> str:
    """gr.File gives a path string (or an object with .name in older clients)."""
    if upload is None:
        raise gr.Error("Upload a scan first: " + ACCEPTED_HELP)
    return str(getattr(upload, "name", upload))


def predict(
    upload: Any,
    model_id: str | None,
    opacity: float = 0.45,
    frame: float | None = None,
    window: str | None = "File default",
    center: float | None = None,
    width: float | None = None,
):  # noqa: ANN201 - Gradio output tuple
    """Run the chosen model on the upload; InputError and friends become a gr.Error the user can act on."""
    path = _file_path(upload)
    frame_index = int(frame) - 1 if frame else None
    try:
        a = analysis.analyse(path, model_id or None, float(opacity), frame_index, window, center, width)
    except MedimgError as exc:
        raise gr.Error(str(exc)) from None
    dw = a.view.default_window
    notes = "\n".join(f"⚠ {w}" for w in a.warnings)
    return (
        a.type_scores,
        a.stage_scores,
        a.stage_text,
        a.pathway_markdown,
        files.png_file(a.original_rgb),
        files.png_file(a.overlay_rgb),
        a.info_markdown,
        a.prediction.to_json(),
        a.view,
        gr.update(maximum=max(a.n_frames, 2), value=a.frame_index + 1, visible=a.n_frames > 1),  # a slider needs min < max
        notes,
        gr.update(value=round(dw[0], 2)) if dw else gr.update(),
        gr.update(value=round(dw[1], 2)) if dw else gr.update(),
    )


def clear_outputs():  # noqa: ANN201
    """Blank every result before a new analysis, so a failed upload never leaves the previous case on screen."""
    return (None, None, "", "", None, None, "", None, None, gr.update(), "", gr.update(), gr.update())


def redraw(view: analysis.View | None, window: str | None, center: float | None, width: float | None, opacity: float):  # noqa: ANN201
    """New display window or opacity: redraw both images without running the model again."""
    if view is None:
        return gr.skip(), gr.skip()
    image, over = view.render(window, center, width, float(opacity))
    return files.png_file(image), files.png_file(over)


def preset_values(view: analysis.View | None, window: str | None):  # noqa: ANN201
    """Show the centre/width of the chosen preset in the manual boxes."""
    w = view.window_for(window, None, None) if view is not None else None
    if w is None and view is not None and window == "File default" and view.default_window:
        w = view.default_window
    if w is None:
        return gr.skip(), gr.skip()
    return w[0], w[1]


def rename_upload(upload: Any):  # noqa: ANN201
    """Replace the upload by a copy named by its hash: the original file name (often a patient's) is not kept."""
    if upload is None:
        return None
    src = Path(_file_path(upload))
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    data = src.read_bytes()  # read once: hashed for the name, then copied
    dst = WORK_DIR / files.upload_name(src, data)
    dst.write_bytes(data)
    try:
        src.unlink()
    except OSError:
        log.warning("Could not remove an uploaded temporary file")
    return str(dst)


def deidentify(upload: Any):  # noqa: ANN201
    path = _file_path(upload)
    try:
        return str(files.deidentified_copy(path, WORK_DIR))
    except MedimgError as exc:
        raise gr.Error(str(exc)) from None


AGREE = ["Agree", "Disagree"]


def submit_feedback(prediction: dict | None, reader: str, session_id: str, type_agree: str | None,
                    stage_agree: str | None, pathway_agree: str | None, corrected_type: str | None,
                    corrected_stage: str | None, heatmap_plausibility: float | None, confidence: float | None,
                    comment: str | None) -> str:
    """Store structured feedback on the prediction shown (API: /feedback)."""
    try:
        row = session.feedback_from_prediction(
            prediction, reader, session_id=session_id, type_agree=type_agree, stage_agree=stage_agree,
            pathway_agree=pathway_agree, corrected_type=corrected_type, corrected_stage=corrected_stage,
            heatmap_plausibility=heatmap_plausibility, confidence=confidence, comment=comment,
        )
    except MedimgError as exc:
        raise gr.Error(str(exc)) from None
    return f"Thank you - feedback #{row} stored (image hash and model version only; no image, no file name)."


def _session_view(s: session.ReadingSession | None):  # noqa: ANN202
    """Progress text, case image, and visibility of the unaided / aided panels."""
    if s is None:
        return "", None, gr.update(visible=False), gr.update(visible=False)
    if s.done:
        return f"**Session complete** - {len(s.cases)} of {len(s.cases)} cases read. Thank you.", None, gr.update(visible=False), gr.update(visible=False)
    text = f"**Case {s.index + 1} of {len(s.cases)}** - session `{s.session_id}`, reader `{s.reader}`, model `{s.model_id}`"
    return text, files.png_file(session.session_case_image(s)), gr.update(visible=not s.revealed), gr.update(visible=s.revealed)


def session_start(reader: str, session_id: str, model_id: str | None, n_cases: float, seed: float):  # noqa: ANN201
    try:
        s = session.start_session(reader, session_id, model_id, int(n_cases), int(seed))
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


def feedback_summary() -> pd.DataFrame:
    """The per-session summary of the feedback store (API: /feedback_summary)."""
    return summarise(read_all(feedback_db())).round(3)


def show_performance(model_id: str | None):  # noqa: ANN201
    """Read the cached evaluation of this model (never evaluates on a page load)."""
    try:
        out = performance_view(model_id)
    except MedimgError as exc:
        raise gr.Error(str(exc)) from None
    stage = gr.update(value=out["stage"], visible=not out["stage"].empty)
    return (out["header"], out["overall"], out["per_class"], stage, out["confusion"], out["roc"],
            out["reliability"], out["explain"], out["gallery"])
