"""The Analyse tab: upload, model choice, display controls, results, heatmap, pathway and per-output feedback."""

from __future__ import annotations

import gradio as gr

from .. import auth, downloads
from .. import handlers as h
from ..analysis import WINDOW_CHOICES
from ..catalog import sample_cases
from .common import IMAGE_BUTTONS, NEW_KEY_JS, feedback_fields


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
