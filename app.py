"""medimg_demo web app (Gradio): layout and events only; the work is done in ``medimg_demo.web``.

Run: ``python app.py`` (then open http://127.0.0.1:7860). Research use only, not a medical device.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline-friendly: no telemetry calls
STARTED = time.time()


def _default_upload_dir() -> str:
    """Gradio's upload cache, when the deployer sets none: a folder of this app's own under the system temp (one
    per state folder), outside MEDIMG_STATE_DIR, so that the start-up sweep never touches another app's files."""
    from medimg_demo.paths import state_dir

    key = hashlib.sha256(str(state_dir().resolve()).encode()).hexdigest()[:12]
    return str(Path(tempfile.gettempdir()) / f"medimg_demo-uploads-{key}")


os.environ.setdefault("GRADIO_TEMP_DIR", _default_upload_dir())  # before gradio reads it

import gradio as gr  # noqa: E402 - after the telemetry switch
from starlette.middleware import Middleware  # noqa: E402

from medimg_demo.notice import DISCLAIMER  # noqa: E402
from medimg_demo.web import handlers as h  # noqa: E402
from medimg_demo.web.analysis import WINDOW_CHOICES  # noqa: E402
from medimg_demo.web.catalog import model_choices, model_versions, sample_cases  # noqa: E402
from medimg_demo.web import auth  # noqa: E402
from medimg_demo.web import downloads, files, uploads  # noqa: E402
from medimg_demo.web.upload_names import AnonymousUploadNames  # noqa: E402

log = logging.getLogger("medimg_demo.app")

BANNER = (
    "<div style='background:#fff3cd;color:#664d03;border:1px solid #ffecb5;padding:10px 14px;border-radius:6px'>"
    f"<b>⚠ {DISCLAIMER.split(' - ')[0]} - not a medical device.</b> {DISCLAIMER.split('. ', 1)[1]}</div>"
)


#: Download and full screen only: no "share to Hugging Face" button on any image.
IMAGE_BUTTONS: list[Any] = ["download", "fullscreen"]
#: A fresh submission key in the browser (crypto.randomUUID needs a secure context; plain http gets a fallback).
NEW_KEY_JS = ("() => (window.crypto && crypto.randomUUID) ? crypto.randomUUID() : "
              "Date.now().toString(36) + '-' + Math.random().toString(36).slice(2, 12)")


def build_app() -> gr.Blocks:
    choices = model_choices()
    # delete_cache: Gradio removes the uploads and outputs of its cache after MAX_AGE_S (and all at shutdown)
    age = int(files.MAX_AGE_S)
    with gr.Blocks(title="medimg_demo - research use only", delete_cache=(max(60, age // 6), age)) as demo:
        gr.HTML(BANNER)
        if auth.hf_oauth():
            gr.LoginButton()
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
            gr.Markdown(f"<small>{h.ACCEPTED_HELP}</small>")
            model = gr.Dropdown(choices=[*choices, ("Auto: pick the model from the image", "auto")],
                                value=choices[0][1] if choices else None, label="Model")
            opacity = gr.Slider(0.0, 1.0, value=0.45, step=0.05, label="Heatmap opacity")
            # a Number, not a Slider: a slider's API maximum is its initial one, so a fresh client could not ask
            # for frame 3 of a 16-frame file; the decoder checks the number against the file
            frame = gr.Number(label="Frame (multi-frame DICOM; Enter to show)", value=None, precision=0, minimum=1,
                              visible=False)
            with gr.Accordion("Display window (DICOM; the model's input does not change)", open=False):
                window = gr.Dropdown(WINDOW_CHOICES, value="File default", label="Window")
                with gr.Row():
                    center = gr.Number(label="Centre", value=None)
                    width = gr.Number(label="Width", value=None, minimum=0)
            run = gr.Button("Analyse", variant="primary")
            with gr.Row():
                report_btn = gr.Button("Download report (PDF)", size="sm")
                deid_btn = gr.Button("De-identified DICOM copy", size="sm")
            report_file = gr.File(label="Case report (PDF)", interactive=False, height=80)
            deid_file = gr.File(label="De-identified copy", interactive=False, height=80)
        with gr.Column(scale=1):
            type_out = gr.Label(label="Tumor type (calibrated probability)", num_top_classes=4)
            stage_out = gr.Label(label="Stage", num_top_classes=3)
            stage_md = gr.Markdown()
            notes = gr.Markdown()
            switch = gr.Button("Switch model", visible=False, size="sm")
    with gr.Row():
        original = gr.Image(label="Image", type="numpy", interactive=False, format="png", buttons=IMAGE_BUTTONS)
        heat = gr.Image(label="Grad-CAM overlay", type="numpy", interactive=False, format="png", buttons=IMAGE_BUTTONS)
    info = gr.Markdown()
    gr.Markdown("### Treatment pathway (options for a tumor board)")
    pathway = gr.Markdown()
    with gr.Accordion("Raw output (JSON)", open=False):
        raw = gr.JSON()
    view = gr.State()
    samples = sample_cases()
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
    run.click(h.clear_outputs, None, outputs, queue=False, api_visibility="private").then(
        h.predict, inputs=inputs, outputs=outputs, api_name="predict"
    ).then(h.suggestion, raw, switch, queue=False, api_visibility="private")
    switch.click(h.switch_model, raw, model, queue=False, api_visibility="private").then(
        h.clear_outputs, None, outputs, queue=False, api_visibility="private"
    ).then(h.predict, inputs=inputs, outputs=outputs, api_visibility="private").then(
        h.suggestion, raw, switch, queue=False, api_visibility="private")
    # queued (not queue=False): the browser shows a queued event's error message, not just "Error"
    cleaned = upload.upload(h.rename_upload, upload, upload, api_visibility="private")
    cleaned.failure(None, None, upload, js="() => null")  # a refused file leaves the upload box empty, ready again
    cleaned.success(
        None, None, [frame, window], js="() => [null, 'File default']"
    ).then(h.clear_outputs, None, outputs, queue=False, api_visibility="private").then(
        h.predict, inputs=inputs, outputs=outputs, api_visibility="private"
    ).then(h.suggestion, raw, switch, queue=False, api_visibility="private")
    frame.submit(h.predict, inputs=inputs, outputs=outputs, api_visibility="private")
    redraw_args = dict(inputs=[view, window, center, width, opacity], outputs=[original, heat], api_visibility="private")
    opacity.release(h.redraw, **redraw_args)
    window.input(h.preset_values, [view, window], [center, width], queue=False, api_visibility="private").then(h.redraw, **redraw_args)
    center.submit(None, None, window, js="() => 'Manual'").then(h.redraw, **redraw_args)
    width.submit(None, None, window, js="() => 'Manual'").then(h.redraw, **redraw_args)
    deid_btn.click(h.deidentify, upload, deid_file, api_visibility="private")
    report_btn.click(downloads.report, [upload, view], report_file, api_visibility="private")

    with gr.Accordion("Your feedback on this output", open=True):
        gr.Markdown("<small>Stored with the image's hash and the model version only. Do not type patient identifiers.</small>")
        with gr.Row():
            fb_reader = gr.Textbox(label="Reader pseudonym", placeholder="e.g. reader07", visible=not auth.logins_on())
            fb_session = gr.Textbox(label="Session id (optional)", max_length=200)
        fields = feedback_fields()
        # one key per submission (new with each result and after each stored answer): a retry is not a duplicate
        fb_key = gr.Textbox(visible=False, label="Submission key")
        fb_btn = gr.Button("Submit feedback")
        fb_status = gr.Markdown()
    raw.change(None, None, fb_key, js=NEW_KEY_JS)
    fb_btn.click(h.submit_feedback, inputs=[raw, fb_reader, fb_session, *fields, fb_key], outputs=fb_status,
                 api_name="feedback").success(None, None, fb_key, js=NEW_KEY_JS)




def feedback_fields() -> list[Any]:
    """The per-output feedback form, in the order h.submit_feedback and h.session_aided take it: agree type / stage /
    pathway, corrected type / stage, heatmap plausibility, confidence, comment."""
    with gr.Row():
        agree = [gr.Radio(h.AGREE, label=label) for label in ("Tumor type", "Stage", "Treatment pathway")]
    with gr.Row():
        corrected = [gr.Textbox(label=f"Corrected {what} (if you disagree; one of the model's labels)", max_length=64)
                     for what in ("type", "stage")]
    with gr.Row():
        plaus = gr.Slider(1, 5, value=3, step=1, label="Heatmap plausibility (1 = implausible, 5 = convincing)")
        conf = gr.Slider(1, 5, value=3, step=1, label="Your confidence (1-5)")
    comment = gr.Textbox(label="Comment", lines=2, max_length=4000)
    return [*agree, *corrected, plaus, conf, comment]


def session_tab(choices: list[tuple[str, str]]) -> None:
    gr.Markdown(
        "Every reader of a session reads the same cases (drawn per class from the test split with the seed). "
        "For each case, record **your own call first**; the model's output and heatmap are shown after, for feedback."
    )
    state = gr.State()
    with gr.Row():
        reader = gr.Textbox(label="Reader pseudonym", placeholder="e.g. reader07", visible=not auth.logins_on())
        session_id = gr.Textbox(label="Session id", value="session-1", max_length=200)
        model = gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, label="Model")
        n_cases = gr.Number(label="Cases", value=20, precision=0, minimum=1, maximum=200)
        seed = gr.Number(label="Seed", value=0, precision=0)
    start = gr.Button("Start or resume session", variant="primary")
    progress = gr.Markdown()
    with gr.Row():
        image = gr.Image(label="Case", type="numpy", interactive=False, format="png", buttons=IMAGE_BUTTONS)
        overlay_img = gr.Image(label="Model heatmap (after your read)", type="numpy", interactive=False, format="png",
                               buttons=IMAGE_BUTTONS)
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
    start.click(h.session_start, [reader, session_id, model, n_cases, seed], [*view_out, r_type, r_stage], api_name="session_start")
    record.click(h.session_unaided, [state, r_type, r_stage, r_conf], [*view_out, m_type, m_stage, m_stage_md, m_path, overlay_img],
                 api_name="session_read")
    nxt.click(
        h.session_aided,
        [state, *fields],
        [*view_out, m_type, m_stage, m_stage_md, m_path, overlay_img, r_type, r_stage, r_conf, *fields],
        api_name="session_feedback",
    )


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
    gallery = gr.Gallery(label="Error gallery: misclassified test cases (image | Grad-CAM)", columns=4, height="auto",
                         buttons=["download", "fullscreen"])
    outs = [header, overall, per_class, stage, confusion, roc, reliability, explain, gallery]
    show.click(h.show_performance, model, outs, api_name="performance")
    model.change(h.show_performance, model, outs, api_visibility="private")


def summary_tab() -> None:
    gr.Markdown("Agreement with the model per output, reader (unaided / aided) vs model accuracy on labelled cases, "
                "and the heatmap plausibility distribution; per session and overall (`ALL`).")
    if auth.logins_on():
        gr.Markdown("<small>Session owners see every reader's work; other readers see their own.</small>")
    table = gr.Dataframe(interactive=False, wrap=True)
    with gr.Row():
        refresh = gr.Button("Refresh")
        export = gr.Button("Export CSV")
    export_file = gr.File(label="Feedback export (CSV)", interactive=False, height=80)
    refresh.click(h.feedback_summary, None, table, api_name="feedback_summary")
    export.click(h.export_feedback, None, export_file, api_name="feedback_export")


demo = build_app()

def launch_options() -> dict[str, Any]:
    """What ``demo.launch`` gets: served and blocked folders, logins, no run history, safe file answers."""
    files.check_layout()
    return dict(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        allowed_paths=files.allowed_paths(),
        blocked_paths=files.blocked_paths(),
        auth=auth.gradio_auth(),
        auth_message="medimg_demo - research use only. Log in with the account the session owner gave you.",
        run_history=False,  # the browser would keep file paths and comments for the next user of the workstation
        max_file_size=os.environ.get("MEDIMG_MAX_UPLOAD_MB", "100") + "mb",
        app_kwargs={"middleware": [Middleware(files.SecureFileHeaders), Middleware(AnonymousUploadNames)]},
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for line in model_versions():
        log.info("model %s", line)
    options = launch_options()
    # leftovers of an earlier run (a crash leaves raw uploads behind): anything untouched since before this start
    uploads.sweep(max_age_s=time.time() - STARTED + 5)
    uploads.start_upload_reaper(demo)  # an upload that no request used is deleted after MEDIMG_RAW_UPLOAD_TTL_S
    demo.queue(default_concurrency_limit=int(os.environ.get("MEDIMG_CONCURRENCY", "2")))
    demo.launch(**options)
