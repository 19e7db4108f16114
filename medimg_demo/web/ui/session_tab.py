"""The Reading session tab: each reader's own call first, then the model's output and feedback."""

from __future__ import annotations

import gradio as gr

from .. import auth
from .. import reading as r
from .common import IMAGE_BUTTONS, feedback_fields


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
    start.click(r.session_start, [reader, session_id, model, n_cases, seed], [*view_out, r_type, r_stage], api_name="session_start")
    record.click(r.session_unaided, [state, r_type, r_stage, r_conf], [*view_out, m_type, m_stage, m_stage_md, m_path, overlay_img],
                 api_name="session_read")
    nxt.click(
        r.session_aided,
        [state, *fields],
        [*view_out, m_type, m_stage, m_stage_md, m_path, overlay_img, r_type, r_stage, r_conf, *fields],
        api_name="session_feedback",
    )
