"""medimg_demo web app (Gradio). UI only: the work is done in ``medimg_demo.service``.

Run: ``python app.py`` (then open http://127.0.0.1:7860). Research use only, not a medical device.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline-friendly: no telemetry calls

import gradio as gr

from medimg_demo import DISCLAIMER, service
from medimg_demo.errors import MedimgError
from medimg_demo.paths import work_dir

log = logging.getLogger("medimg_demo.app")

BANNER = (
    "<div style='background:#fff3cd;color:#664d03;border:1px solid #ffecb5;padding:10px 14px;border-radius:6px'>"
    f"<b>⚠ {DISCLAIMER.split(' - ')[0]} - not a medical device.</b> {DISCLAIMER.split('. ', 1)[1]}</div>"
)
ACCEPTED_HELP = "PNG, JPEG or DICOM (.dcm or no extension). DICOM identifiers are dropped on upload and never shown or stored."
#: Where renamed uploads and de-identified copies go: inside the one folder the deployer sets (MEDIMG_STATE_DIR).
WORK_DIR = work_dir()


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
        a = service.analyse(path, model_id or None, float(opacity), frame_index, window, center, width)
    except MedimgError as exc:
        raise gr.Error(str(exc)) from None
    dw = a.view.default_window
    notes = "\n".join(f"⚠ {w}" for w in a.warnings)
    return (
        a.type_scores,
        a.stage_scores,
        a.stage_text,
        a.pathway_markdown,
        service.png_file(a.original_rgb),
        service.png_file(a.overlay_rgb),
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


def redraw(view: service.View | None, window: str | None, center: float | None, width: float | None, opacity: float):  # noqa: ANN201
    """New display window or opacity: redraw both images without running the model again."""
    if view is None:
        return gr.skip(), gr.skip()
    image, over = view.render(window, center, width, float(opacity))
    return service.png_file(image), service.png_file(over)


def preset_values(view: service.View | None, window: str | None):  # noqa: ANN201
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
    dst = WORK_DIR / service.upload_name(src, data)
    dst.write_bytes(data)
    try:
        src.unlink()
    except OSError:
        log.warning("Could not remove an uploaded temporary file")
    return str(dst)


def deidentify(upload: Any):  # noqa: ANN201
    path = _file_path(upload)
    try:
        return str(service.deidentified_copy(path, WORK_DIR))
    except MedimgError as exc:
        raise gr.Error(str(exc)) from None


AGREE = ["Agree", "Disagree"]


def submit_feedback(prediction: dict | None, reader: str, session_id: str, type_agree: str | None,
                    stage_agree: str | None, pathway_agree: str | None, corrected_type: str | None,
                    corrected_stage: str | None, heatmap_plausibility: float | None, confidence: float | None,
                    comment: str | None) -> str:
    """Store structured feedback on the prediction shown (API: /feedback)."""
    try:
        row = service.feedback_from_prediction(
            prediction, reader, session_id=session_id, type_agree=type_agree, stage_agree=stage_agree,
            pathway_agree=pathway_agree, corrected_type=corrected_type, corrected_stage=corrected_stage,
            heatmap_plausibility=heatmap_plausibility, confidence=confidence, comment=comment,
        )
    except MedimgError as exc:
        raise gr.Error(str(exc)) from None
    return f"Thank you - feedback #{row} stored (image hash and model version only; no image, no file name)."


def _session_view(s: service.ReadingSession | None):  # noqa: ANN202
    """Progress text, case image, and visibility of the unaided / aided panels."""
    if s is None:
        return "", None, gr.update(visible=False), gr.update(visible=False)
    if s.done:
        return f"**Session complete** - {len(s.cases)} of {len(s.cases)} cases read. Thank you.", None, gr.update(visible=False), gr.update(visible=False)
    text = f"**Case {s.index + 1} of {len(s.cases)}** - session `{s.session_id}`, reader `{s.reader}`, model `{s.model_id}`"
    return text, service.png_file(service.session_case_image(s)), gr.update(visible=not s.revealed), gr.update(visible=s.revealed)


def session_start(reader: str, session_id: str, model_id: str | None, n_cases: float, seed: float):  # noqa: ANN201
    try:
        s = service.start_session(reader, session_id, model_id, int(n_cases), int(seed))
    except MedimgError as exc:
        raise gr.Error(str(exc)) from None
    cfg_labels = service.model_labels(s.model_id)
    return (s, *_session_view(s), gr.update(choices=cfg_labels["type"], value=None),
            gr.update(choices=cfg_labels.get("stage") or [], value=None, visible=bool(cfg_labels.get("stage"))))


def session_unaided(s: service.ReadingSession | None, reader_type: str | None, reader_stage: str | None,
                    confidence: float | None):  # noqa: ANN201
    if s is None:
        raise gr.Error("Start the session first.")
    try:
        a = service.session_record_unaided(s, reader_type, reader_stage, int(confidence) if confidence else None)
    except MedimgError as exc:
        raise gr.Error(str(exc)) from None
    return (s, *_session_view(s), a.type_scores, a.stage_scores, a.stage_text, a.pathway_markdown,
            service.png_file(a.overlay_rgb))


def session_aided(s: service.ReadingSession | None, type_agree: str | None, stage_agree: str | None,
                  pathway_agree: str | None, corrected_type: str | None, corrected_stage: str | None,
                  heatmap_plausibility: float | None, confidence: float | None, comment: str | None):  # noqa: ANN201
    if s is None:
        raise gr.Error("Start the session first.")
    try:
        service.session_record_aided(
            s, type_agree=type_agree, stage_agree=stage_agree, pathway_agree=pathway_agree,
            corrected_type=corrected_type, corrected_stage=corrected_stage,
            heatmap_plausibility=heatmap_plausibility, confidence=confidence, comment=comment,
        )
    except MedimgError as exc:
        raise gr.Error(str(exc)) from None
    return (s, *_session_view(s), None, None, "", "", None,  # model outputs hidden again
            None, None, 3, *FEEDBACK_RESET)  # own-read and feedback forms reset


def feedback_summary():  # noqa: ANN201
    from medimg_demo import feedback
    from medimg_demo.paths import feedback_db

    return feedback.summarise(feedback.read_all(feedback_db())).round(3)


def build_app() -> gr.Blocks:
    choices = service.model_choices()
    with gr.Blocks(title="medimg_demo - research use only") as demo:
        gr.HTML(BANNER)
        gr.Markdown("# medimg_demo\nUpload a scan to see the suggested tumor type, a stage, a guideline-based pathway and a Grad-CAM heatmap.")
        with gr.Tab("Analyse"):
            analyse_tab(choices)
        with gr.Tab("Performance"):
            performance_tab(choices)
        with gr.Tab("Reading session"):
            session_tab(choices)
        with gr.Tab("Feedback summary"):
            summary_tab()
    return demo


def analyse_tab(choices: list[tuple[str, str]]) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Scan", file_count="single", type="filepath")
            gr.Markdown(f"<small>{ACCEPTED_HELP}</small>")
            model = gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, label="Model")
            opacity = gr.Slider(0.0, 1.0, value=0.45, step=0.05, label="Heatmap opacity")
            frame = gr.Slider(1, 2, value=1, step=1, label="Frame (multi-frame DICOM)", visible=False)
            with gr.Accordion("Display window (DICOM; the model's input does not change)", open=False):
                window = gr.Dropdown(service.WINDOW_CHOICES, value="File default", label="Window")
                with gr.Row():
                    center = gr.Number(label="Centre", value=None)
                    width = gr.Number(label="Width", value=None, minimum=0)
            run = gr.Button("Analyse", variant="primary")
            deid_btn = gr.Button("De-identified DICOM copy", size="sm")
            deid_file = gr.File(label="De-identified copy", interactive=False, height=80)
        with gr.Column(scale=1):
            type_out = gr.Label(label="Tumor type (calibrated probability)", num_top_classes=4)
            stage_out = gr.Label(label="Stage", num_top_classes=3)
            stage_md = gr.Markdown()
            notes = gr.Markdown()
    with gr.Row():
        original = gr.Image(label="Image", type="numpy", interactive=False, format="png")
        heat = gr.Image(label="Grad-CAM overlay", type="numpy", interactive=False, format="png")
    info = gr.Markdown()
    gr.Markdown("### Treatment pathway (options for a tumor board)")
    pathway = gr.Markdown()
    with gr.Accordion("Raw output (JSON)", open=False):
        raw = gr.JSON()
    view = gr.State()
    samples = service.sample_cases()
    if samples:
        gr.Examples(
            examples=[[path, model_id] for path, model_id, _ in samples],
            inputs=[upload, model],
            example_labels=[f"{model_id.split('.')[0]}: {label} (test split)" for _, model_id, label in samples],
            label="Sample cases from the test split (one per class)",
            cache_examples=False,
        )

    inputs = [upload, model, opacity, frame, window, center, width]
    outputs = [type_out, stage_out, stage_md, pathway, original, heat, info, raw, view, frame, notes, center, width]
    run.click(clear_outputs, None, outputs, queue=False, api_visibility="private").then(
        predict, inputs=inputs, outputs=outputs, api_name="predict"
    )
    upload.upload(rename_upload, upload, upload, queue=False, api_visibility="private").then(
        lambda: (None, "File default"), None, [frame, window], queue=False, api_visibility="private"
    ).then(clear_outputs, None, outputs, queue=False, api_visibility="private").then(
        predict, inputs=inputs, outputs=outputs, api_visibility="private"
    )
    frame.release(predict, inputs=inputs, outputs=outputs, api_visibility="private")
    redraw_args = dict(inputs=[view, window, center, width, opacity], outputs=[original, heat], api_visibility="private")
    opacity.release(redraw, **redraw_args)
    window.input(preset_values, [view, window], [center, width], queue=False, api_visibility="private").then(redraw, **redraw_args)
    center.submit(lambda: "Manual", None, window, queue=False, api_visibility="private").then(redraw, **redraw_args)
    width.submit(lambda: "Manual", None, window, queue=False, api_visibility="private").then(redraw, **redraw_args)
    deid_btn.click(deidentify, upload, deid_file, api_visibility="private")

    with gr.Accordion("Your feedback on this output", open=True):
        gr.Markdown("<small>Stored with the image's hash and the model version only. Do not type patient identifiers.</small>")
        with gr.Row():
            fb_reader = gr.Textbox(label="Reader pseudonym", placeholder="e.g. reader07")
            fb_session = gr.Textbox(label="Session id (optional)")
        fields = feedback_fields()
        fb_btn = gr.Button("Submit feedback")
        fb_status = gr.Markdown()
    fb_btn.click(submit_feedback, inputs=[raw, fb_reader, fb_session, *fields], outputs=fb_status, api_name="feedback")


#: What feedback_fields() shows again after a submission: no answers, sliders at 3, empty texts.
FEEDBACK_RESET = (None, None, None, "", "", 3, 3, "")


def feedback_fields() -> list[Any]:
    """The per-output feedback form, in the order submit_feedback and session_aided take it: agree type / stage /
    pathway, corrected type / stage, heatmap plausibility, confidence, comment."""
    with gr.Row():
        agree = [gr.Radio(AGREE, label=label) for label in ("Tumor type", "Stage", "Treatment pathway")]
    with gr.Row():
        corrected = [gr.Textbox(label=f"Corrected {what} (if you disagree)") for what in ("type", "stage")]
    with gr.Row():
        plaus = gr.Slider(1, 5, value=3, step=1, label="Heatmap plausibility (1 = implausible, 5 = convincing)")
        conf = gr.Slider(1, 5, value=3, step=1, label="Your confidence (1-5)")
    comment = gr.Textbox(label="Comment", lines=2)
    return [*agree, *corrected, plaus, conf, comment]


def session_tab(choices: list[tuple[str, str]]) -> None:
    gr.Markdown(
        "Every reader of a session reads the same cases (drawn per class from the test split with the seed). "
        "For each case, record **your own call first**; the model's output and heatmap are shown after, for feedback."
    )
    state = gr.State()
    with gr.Row():
        reader = gr.Textbox(label="Reader pseudonym", placeholder="e.g. reader07")
        session_id = gr.Textbox(label="Session id", value="session-1")
        model = gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, label="Model")
        n_cases = gr.Number(label="Cases", value=20, precision=0, minimum=1, maximum=200)
        seed = gr.Number(label="Seed", value=0, precision=0)
    start = gr.Button("Start or resume session", variant="primary")
    progress = gr.Markdown()
    with gr.Row():
        image = gr.Image(label="Case", type="numpy", interactive=False, format="png")
        overlay_img = gr.Image(label="Model heatmap (after your read)", type="numpy", interactive=False, format="png")
    with gr.Group(visible=False) as unaided:
        gr.Markdown("#### 1. Your own read (before seeing the model)")
        with gr.Row():
            r_type = gr.Radio([], label="Tumor type")
            r_stage = gr.Radio([], label="Stage", visible=False)
            r_conf = gr.Slider(1, 5, value=3, step=1, label="Your confidence")
        record = gr.Button("Record my read and show the model", variant="primary")
    with gr.Group(visible=False) as aided:
        gr.Markdown("#### 2. The model's output - your feedback")
        with gr.Row():
            m_type = gr.Label(label="Model: tumor type", num_top_classes=4)
            m_stage = gr.Label(label="Model: stage", num_top_classes=3)
        m_stage_md = gr.Markdown()
        m_path = gr.Markdown()
        fields = feedback_fields()
        nxt = gr.Button("Submit feedback and go to the next case", variant="primary")
    view_out = [state, progress, image, unaided, aided]
    start.click(session_start, [reader, session_id, model, n_cases, seed], [*view_out, r_type, r_stage], api_name="session_start")
    record.click(session_unaided, [state, r_type, r_stage, r_conf], [*view_out, m_type, m_stage, m_stage_md, m_path, overlay_img],
                 api_name="session_read")
    nxt.click(
        session_aided,
        [state, *fields],
        [*view_out, m_type, m_stage, m_stage_md, m_path, overlay_img, r_type, r_stage, r_conf, *fields],
        api_name="session_feedback",
    )


def show_performance(model_id: str | None):  # noqa: ANN201
    """Read the cached evaluation of this model (never evaluates on a page load)."""
    try:
        out = service.performance_view(model_id)
    except MedimgError as exc:
        raise gr.Error(str(exc)) from None
    stage = gr.update(value=out["stage"], visible=not out["stage"].empty)
    return (out["header"], out["overall"], out["per_class"], stage, out["confusion"], out["roc"],
            out["reliability"], out["explain"], out["gallery"])


def performance_tab(choices: list[tuple[str, str]]) -> None:
    gr.Markdown("Measured on the bundled **test** split of each data set, with 95% bootstrap intervals. "
                "Results come from the evaluation cache (`python -m medimg_demo evaluate --model ID --split test --explain`).")
    with gr.Row():
        model = gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, label="Model")
        show = gr.Button("Show")
    header = gr.Markdown()
    with gr.Row():
        overall = gr.Dataframe(label="Overall", interactive=False)
        per_class = gr.Dataframe(label="Per class (type)", interactive=False, wrap=True)
    stage = gr.Dataframe(label="Per class (stage head)", interactive=False, wrap=True, visible=False)
    with gr.Row():
        confusion = gr.Plot(label="Confusion matrix")
        roc = gr.Plot(label="ROC curves")
        reliability = gr.Plot(label="Calibration")
    explain = gr.Markdown()
    gallery = gr.Gallery(label="Error gallery: misclassified test cases (image | Grad-CAM)", columns=4, height="auto")
    outs = [header, overall, per_class, stage, confusion, roc, reliability, explain, gallery]
    show.click(show_performance, model, outs, api_name="performance")
    model.change(show_performance, model, outs, api_visibility="private")


def summary_tab() -> None:
    gr.Markdown("Agreement with the model per output, reader (unaided / aided) vs model accuracy on labelled cases, "
                "and the heatmap plausibility distribution; per session and overall (`ALL`).")
    table = gr.Dataframe(interactive=False, wrap=True)
    refresh = gr.Button("Refresh")
    refresh.click(feedback_summary, None, table, api_name="feedback_summary")


demo = build_app()

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for line in service.model_versions():
        log.info("model %s", line)
    demo.queue(default_concurrency_limit=int(os.environ.get("MEDIMG_CONCURRENCY", "2")))
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        allowed_paths=service.allowed_paths(),
        max_file_size=os.environ.get("MEDIMG_MAX_UPLOAD_MB", "200") + "mb",
    )
