"""The Feedback summary tab: reading sessions as a reader study (accuracy unaided vs aided with intervals,
agreement, switch rates, the multi-reader multi-case verdict and a plot), agreement per output, CSV exports."""

from __future__ import annotations

import gradio as gr

from .. import auth
from .. import reading as r
from ..viewer import show_file


def summary_tab(tab: gr.Tab | None = None) -> None:
    gr.Markdown("Reading sessions as a reader study: each reader's accuracy **unaided** (own call first) and "
                "**aided** (after seeing the model), agreement with the model and how often readers switched to "
                "its call, per reader and for all readers; the multi-reader multi-case test of unaided vs aided "
                "accuracy once a session has at least 3 readers x 20 cases.")
    if auth.logins_on():
        gr.Markdown("Session owners see every reader's work; other readers see their own.")  # not small print
    with gr.Row():
        refresh = gr.Button("Refresh", variant="primary")
        session = gr.Dropdown([], label="Session", value=None, scale=2)
    verdict = gr.Markdown(elem_id="mrmc-verdict")
    table = gr.Dataframe(label="Reader study of the session: rate [95% interval] (count / reads)", interactive=False,
                         wrap=True, elem_id="reader-study-table", column_widths=["300px"],
                         max_height=1400)  # every row in view: 500 px hid the last one in a scroll box
    legend = gr.Markdown()
    plot = gr.Plot(label="Accuracy unaided vs aided", elem_id="reader-study-plot")
    with gr.Accordion("Agreement per output and heatmap plausibility", open=False) as agreement:
        outputs = gr.Dataframe(interactive=False, wrap=True)
        gr.Markdown("<small>Agreement: share of 'Agree' among the answers given (count / answers). Heatmap: how "
                    "many answers rated its plausibility 1 (implausible) to 5 (convincing). **-** : no answer of "
                    "that kind (for example the stage of a model without a stage head).</small>")
    with gr.Row():
        export_study = gr.Button("Export reader-study table (CSV)")
        export = gr.Button("Export all feedback rows (CSV)")
    export_file = gr.File(label="Export (CSV)", interactive=False, height=80, visible=False)  # shown once it holds one
    # the API's table (machine-readable column names, one row per session): /feedback_summary
    api_table = gr.Dataframe(visible=False)
    view = [table, legend, session, verdict, plot, outputs, agreement]
    refresh.click(r.feedback_summary, None, api_table, api_name="feedback_summary").then(
        r.summary_view, session, view, api_visibility="private")
    if tab is not None:  # filled when opened (it had shown an empty "1 2 3" table until Refresh), as Performance is
        tab.select(r.summary_view, session, view, api_visibility="private")
    session.input(r.summary_view, session, view, api_visibility="private")
    for button, handler, name in ((export_study, r.export_reader_study, "reader_study_export"),
                                  (export, r.export_feedback, "feedback_export")):
        button.click(handler, None, export_file, api_name=name).success(
            show_file, export_file, export_file, queue=False, api_visibility="private")
