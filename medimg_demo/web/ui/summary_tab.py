"""The Feedback summary tab: per-session agreement and reader accuracy, and the CSV export."""

from __future__ import annotations

import gradio as gr

from .. import auth
from .. import reading as r


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
    refresh.click(r.feedback_summary, None, table, api_name="feedback_summary")
    export.click(r.export_feedback, None, export_file, api_name="feedback_export")
