"""The Performance tab: the cached test-split evaluation of a model (tables, plots, explanation checks, errors)."""

from __future__ import annotations

import gradio as gr

from .. import handlers as h
from ..performance import GALLERY_LABEL

#: The error gallery's pictures are image | Grad-CAM pairs, about twice as wide as high. Gradio's tiles are square
#: and crop a picture to fill them, which cut off the outer half of each side: tiles of the pairs' shape, and the
#: whole picture fitted into each.
CSS = ("#perf-gallery .thumbnail-item { aspect-ratio: 2 / 1; }\n"
       # class names wrap between words, never inside one ("Adenocarcinom / a")
       "#perf-explain th, #perf-explain td { overflow-wrap: normal; word-break: normal; hyphens: none; }")


def performance_tab(choices: list[tuple[str, str]], tab: gr.Tab | None = None) -> None:
    """The tab's content; ``tab``: the Tab it sits in, so that opening it shows the chosen model's figures at once
    (before, a reader saw empty tables headed 1, 2, 3 until they pressed Show)."""
    gr.Markdown("Measured on the bundled **test** split of each data set, with 95% intervals: Wilson score "
                "intervals for proportions, k of n cases (accuracy, sensitivity, specificity, precision, and every "
                "explanation share: pointing hits, calls lost, kept or changed, box IoU >= 0.5), Newcombe's score "
                "interval for each class's AUC, percentile bootstrap over cases for macro AUC, F1, ECE and the other "
                "explanation measures (median Dice and IoU, deletion and insertion AUC). "
                "Results come from the evaluation cache (`python -m medimg_demo evaluate --model ID --split test --explain`).")
    with gr.Row():
        model = gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, label="Model",
                            elem_id="perf-model")
        show = gr.Button("Show")
    header = gr.Markdown(elem_id="perf-header")
    # one table a row, with set column widths: five "0.95 [0.90, 0.99]" columns beside the class name fit without
    # scrolling at the right (side by side with the overall table they were cut off)
    overall = gr.Dataframe(label="Overall (value and 95% interval)", interactive=False, wrap=True,
                           column_widths=["40%", "12%", "22%", "26%"], elem_id="perf-overall",
                           max_height=1000)  # every row in view (lung: 16 rows; 500 px cut the last off)
    widths = ["25%", *["15%"] * 5]
    per_class = gr.Dataframe(label="Per class (type): value [95% CI]", interactive=False, wrap=True,
                             column_widths=widths, elem_id="perf-per-class")
    stage = gr.Dataframe(label="Per class (stage head): value [95% CI]", interactive=False, wrap=True, visible=False,
                         column_widths=widths, elem_id="perf-stage")
    with gr.Row():
        # the figures carry their own titles; their text alternatives: ui/a11y.py, by these ids
        confusion = gr.Plot(label="Confusion matrix", show_label=False, elem_id="perf-confusion")
        roc = gr.Plot(label="ROC curves", show_label=False, elem_id="perf-roc")
        reliability = gr.Plot(label="Calibration", show_label=False, elem_id="perf-reliability")
    explain = gr.Markdown(elem_id="perf-explain")  # a measure a row, all cases and each class beside it
    gallery = gr.Gallery(label=GALLERY_LABEL, columns=3, height="auto",
                         object_fit="contain", buttons=["download", "fullscreen"], elem_id="perf-gallery")
    outs = [header, overall, per_class, stage, confusion, roc, reliability, explain, gallery]
    show.click(h.show_performance, model, outs, api_name="performance")
    model.change(h.show_performance, model, outs, api_visibility="private")
    if tab is not None:  # reads the evaluation cache (0.1-0.4 s), never evaluates
        tab.select(h.show_performance, model, outs, api_visibility="private")
