"""medimg_demo web app (Gradio). UI only: the work is done in ``medimg_demo.service``.

Run: ``python app.py`` (then open http://127.0.0.1:7860). Research use only, not a medical device.
"""

from __future__ import annotations

import logging
import os
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline-friendly: no telemetry calls

import gradio as gr

from medimg_demo import DISCLAIMER, service
from medimg_demo.errors import MedimgError

log = logging.getLogger("medimg_demo.app")

BANNER = (
    "<div style='background:#fff3cd;color:#664d03;border:1px solid #ffecb5;padding:10px 14px;border-radius:6px'>"
    f"<b>⚠ {DISCLAIMER.split(' - ')[0]} - not a medical device.</b> {DISCLAIMER.split('. ', 1)[1]}</div>"
)
ACCEPTED_HELP = "PNG, JPEG or DICOM (.dcm or no extension). DICOM identifiers are dropped on upload and never shown or stored."


def _file_path(upload: Any) -> str:
    """gr.File gives a path string (or an object with .name in older clients)."""
    if upload is None:
        raise gr.Error("Upload a scan first: " + ACCEPTED_HELP)
    return str(getattr(upload, "name", upload))


def predict(upload: Any, model_id: str | None, opacity: float):  # noqa: ANN201 - Gradio output tuple
    """Run the chosen model on the upload; InputError and friends become a gr.Error the user can act on."""
    path = _file_path(upload)
    try:
        a = service.analyse(path, model_id or None, float(opacity))
    except MedimgError as exc:
        raise gr.Error(str(exc)) from None
    pred = a.prediction
    return (
        a.type_scores,
        a.stage_scores,
        a.stage_text,
        a.pathway_markdown,
        a.original_rgb,
        a.overlay_rgb,
        a.info_markdown,
        service.summary_json(a),
        (pred.image, pred.heatmap),
    )


def update_opacity(state: tuple | None, opacity: float):  # noqa: ANN201
    if not state:
        return gr.skip()
    return service.reblend(state[0], state[1], float(opacity))


def build_app() -> gr.Blocks:
    choices = service.model_choices()
    with gr.Blocks(title="medimg_demo - research use only") as demo:
        gr.HTML(BANNER)
        gr.Markdown("# medimg_demo\nUpload a scan to see the suggested tumor type, a stage, a guideline-based pathway and a Grad-CAM heatmap.")
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Scan", file_count="single", type="filepath")
                gr.Markdown(f"<small>{ACCEPTED_HELP}</small>")
                model = gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, label="Model")
                opacity = gr.Slider(0.0, 1.0, value=0.45, step=0.05, label="Heatmap opacity")
                run = gr.Button("Analyse", variant="primary")
            with gr.Column(scale=1):
                type_out = gr.Label(label="Tumor type (calibrated probability)", num_top_classes=4)
                stage_out = gr.Label(label="Stage", num_top_classes=3)
                stage_md = gr.Markdown()
        with gr.Row():
            original = gr.Image(label="Image", type="numpy", interactive=False)
            heat = gr.Image(label="Grad-CAM overlay", type="numpy", interactive=False)
        info = gr.Markdown()
        gr.Markdown("### Treatment pathway (options for a tumor board)")
        pathway = gr.Markdown()
        with gr.Accordion("Raw output (JSON)", open=False):
            raw = gr.JSON()
        state = gr.State()
        samples = service.sample_cases()
        if samples:
            gr.Examples(
                examples=[[path, model_id] for path, model_id, _ in samples],
                inputs=[upload, model],
                example_labels=[f"{model_id.split('.')[0]}: {label} (test split)" for _, model_id, label in samples],
                label="Sample cases from the test split (one per class)",
                cache_examples=False,
            )

        outputs = [type_out, stage_out, stage_md, pathway, original, heat, info, raw, state]
        run.click(predict, inputs=[upload, model, opacity], outputs=outputs, api_name="predict")
        upload.upload(predict, inputs=[upload, model, opacity], outputs=outputs, api_visibility="private")
        opacity.release(update_opacity, inputs=[state, opacity], outputs=heat, api_visibility="private")
    return demo


demo = build_app()

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    demo.queue(default_concurrency_limit=int(os.environ.get("MEDIMG_CONCURRENCY", "2")))
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), allowed_paths=service.allowed_paths())
