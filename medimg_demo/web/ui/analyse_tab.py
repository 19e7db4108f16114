"""The Analyse tab: upload or sample case, model choice, a large compare viewer (image / Grad-CAM overlay) with zoom
and colour bar, results beside it, display controls, pathway, downloads and per-output feedback."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from .. import auth, downloads, viewer
from .. import handlers as h
from ..analysis import CENTRE_CHOICES, WINDOW_CHOICES
from ...models.registry import get_model
from ...tasks import get_task
from ..catalog import sample_cases
from ..viewer import CSS as VIEWER_CSS, OPACITY_LABEL, VIEWER_HELP, VIEWER_LABEL, ZOOM_CHOICES
from .common import IMAGE_BUTTONS, NEW_KEY_JS, feedback_fields

#: A new file or sample: back to the file's middle frame and its own display window.
RESET_FRAME_JS = "() => [null, 'File default']"

#: Work of the page's own (an upload being cleaned, an analysis, a report, a de-identified copy) holds the controls
#: that would start more: the server takes one such job per reader (web/fair_share.py) and refuses a second, and
#: Gradio then marked the outputs "Error" while the first one was still coming. Counted in the browser (no round trip,
#: so a hold always comes before the work it guards); while held, the sample cases are inert (no click, no focus, so
#: no Enter or Space either) and greyed (CSS below).
HELD = 7  # Analyse, the model, the frame box, the report, the copy, the file box, the model switch (analyse_tab: held)
_UPDATE = "{__type__: 'update', interactive: %s}"
_SAMPLES = "document.getElementById('samples')"
#: A held control loses the keyboard focus (a disabled button, an inert sample case): the page fell back to its top,
#: where a screen reader then read on. The control that had it gets it back once everything is let go, unless the
#: reader has moved on meanwhile (tried for a few frames, while Gradio turns the controls back on). A control Gradio
#: removed meanwhile (the upload box's button, replaced by the file once it is chosen: a11y.PAGE_JS keeps the last
#: focused control and its box) leaves the focus to its box: the box's link (the file), else its first control.
_KEEP_FOCUS = ("if (!window.medimgWork) { const a = document.activeElement, l = window.medimgLastFocus; "
               "window.medimgFocus = a && a !== document.body ? {el: a, box: a.closest('.block[id]')} "
               ": (l && !l.el.isConnected ? l : null); } ")
_GIVE_FOCUS_BACK = ("const f = window.medimgFocus; window.medimgFocus = null; let tries = 0, given = null; "
                    "const back = () => { const a = document.activeElement; "
                    # none, new work holding the controls again, or the reader moved on
                    "if (!f || window.medimgWork || (a && a !== document.body && a !== given)) return; "
                    "if (!a || a === document.body) { const t = f.el.isConnected ? f.el : f.box && "
                    "(f.box.querySelector('a[href]') || f.box.querySelector('button:not([disabled]), "
                    "input:not([disabled])')); if (t && t.isConnected && !t.disabled && t.offsetParent) { "
                    "t.focus({preventScroll: true}); given = t; } } "
                    # on for a second: Gradio redraws a box as its controls come back, and the focus fell to the page
                    "if (++tries < 60) requestAnimationFrame(back); }; requestAnimationFrame(back); ")
HOLD_JS = (f"() => {{ {_KEEP_FOCUS}window.medimgWork = (window.medimgWork || 0) + 1; "
           f"document.body.classList.add('medimg-busy'); {_SAMPLES}?.setAttribute('inert', ''); "
           f"return Array({HELD}).fill({_UPDATE % 'false'}); }}")
RELEASE_JS = ("() => { const n = window.medimgWork = Math.max(0, (window.medimgWork || 0) - 1); "
              f"if (n === 0) {{ document.body.classList.remove('medimg-busy'); {_SAMPLES}?.removeAttribute('inert'); "
              f"{_GIVE_FOCUS_BACK}}} return Array({HELD}).fill({_UPDATE % 'n === 0'}); }}")
#: the frame box left: its number, or none when the Analyse button took the focus (that click reads the box itself)
LEFT_FRAME_JS = ("async (view, frame) => { await new Promise(r => setTimeout(r, 0)); "
                 "return [view, document.activeElement?.closest?.('#analyse-run') ? null : frame]; }")
#: the sample cases while the page's work holds the controls (they would replace the file under a running analysis)
CSS = ("body.medimg-busy #samples { pointer-events: none; opacity: 0.55; }\n"
       # Gradio's radios and sliders showed no focus ring: a keyboard reader could not see where it was
       "input[type=radio]:focus-visible, input[type=range]:focus-visible, input[type=checkbox]:focus-visible "
       "{ outline: 2px solid var(--primary-700); outline-offset: 2px; }\n"
       ".dark input[type=radio]:focus-visible, .dark input[type=range]:focus-visible, "
       ".dark input[type=checkbox]:focus-visible { outline-color: var(--primary-500); }\n"
       # a caption of two lines ("Stage, learned through the type: ...") lay over the call's heading: in the flow
       "#type-out label.float, #stage-out label.float { position: static; }\n" + VIEWER_CSS)


def _sample_label(model_id: str, label: str) -> str:
    """"Lung CT: Large cell carcinoma" for a sample of the lung model whose true label is large_cell_carcinoma."""
    spec = get_task(get_model(model_id).task)
    return f"{spec.title}: {spec.label_name(label)}"


def _samples(upload: gr.File, model: gr.Dropdown) -> gr.Examples | None:
    """Sample cases from the test split (one per class); a click fills the form and analyses (wired below)."""
    samples = [s for s in sample_cases() if Path(s[0]).is_file()]  # a file each: never a folder made static
    if not samples:
        return None
    # Served from where they lie, not copied into Gradio's cache: gr.Examples caches them without keeping them, so
    # Gradio's delete_cache removed them after MEDIMG_FILE_MAX_AGE_S and every sample button then failed. These are
    # test-split images of the public data sets, the only files added (each file, not its folder).
    gr.set_static_paths([path for path, _, _ in samples])
    return gr.Examples(
        examples=[[path, model_id] for path, model_id, _ in samples],
        inputs=[upload, model],
        example_labels=[_sample_label(model_id, label) for _, model_id, label in samples],
        label="Sample cases (test split, one per class; the true class is named): click one to analyse it",
        cache_examples=False,
        examples_per_page=12,
        elem_id="samples",
    )


def analyse_tab(choices: list[tuple[str, str]]) -> None:
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=210):
            upload = gr.File(label="Scan", file_count="single", type="filepath", height=150, elem_id="scan")
            gr.Markdown(f"<small>{h.ACCEPTED_HELP}</small>")
            model = gr.Dropdown(choices=[*choices, ("Auto (model from the image)", "auto")],
                                value=choices[0][1] if choices else None, label="Model", elem_id="analyse-model")
            run = gr.Button("Analyse", variant="primary", elem_id="analyse-run")
            # a Number, not a Slider: a slider's API maximum is its initial one, so a fresh client could not ask
            # for frame 3 of a 16-frame file; the decoder checks the number against the file
            # no minimum: Gradio refused a 0 (or a negative width below) with a second toast, and every later
            # analysis with it (the boxes are its inputs) until corrected; the server says what to type instead
            frame = gr.Number(label="Frame (multi-frame DICOM; Enter or Tab to show)", value=None, precision=0,
                              visible=False, elem_id="frame")
            report_btn = gr.Button("Download report (PDF)", size="sm", visible=False)
            report_file = gr.File(label="Case report (PDF)", interactive=False, height=80, visible=False,
                                  elem_id="report-file")
            deid_btn = gr.Button("De-identified DICOM copy", size="sm", visible=False)
            deid_file = gr.File(label="De-identified copy", interactive=False, height=80, visible=False,
                                elem_id="deid-file")
            examples = _samples(upload, model)  # above the display window: on a laptop's screen, not below it
            with gr.Accordion("Display window (DICOM; the model's input does not change)", open=False):
                window = gr.Dropdown(WINDOW_CHOICES, value="File default", label="Window")
                with gr.Row():
                    center = gr.Number(label="Centre", value=None)
                    width = gr.Number(label="Width", value=None)
        with gr.Column(scale=6, min_width=400):
            slider = gr.ImageSlider(label=VIEWER_LABEL, type="filepath", format="png", interactive=False,
                                    buttons=IMAGE_BUTTONS, max_height=760, elem_id="viewer")
            gr.Markdown(VIEWER_HELP, elem_id="viewer-help")
            with gr.Row(equal_height=False):
                # the whole overlay, the zoomed region outlined: a click centres the zoom there
                heat = gr.Image(label="Overview: click to zoom there", type="numpy", interactive=False,
                                format="png", buttons=IMAGE_BUTTONS, height=190, scale=1, min_width=150,
                                elem_id="overview")
                with gr.Column(scale=2, min_width=220):
                    zoom = gr.Radio(ZOOM_CHOICES, value="1x", label="Zoom (rendered from the scan's own pixels)")
                    centre = gr.Radio(CENTRE_CHOICES, value=CENTRE_CHOICES[0], label="Zoom centre")
                    opacity = gr.Slider(0.0, 1.0, value=0.45, step=0.05, label=OPACITY_LABEL, elem_id="opacity")
                    outline = gr.Checkbox(value=True, label="Lesion outline (the model's lesion head)", visible=False,
                                          elem_id="lesion-outline")
            # the plain image of /predict's output 4 (API clients read it); the viewer shows it on screen
            original = gr.Image(label="Image", type="numpy", interactive=False, format="png", buttons=IMAGE_BUTTONS,
                                visible=False)
            info = gr.Markdown(elem_id="analysis-info")
        with gr.Column(scale=3, min_width=260):
            notes = gr.Markdown(elem_id="analysis-notes")
            switch = gr.Button("Switch model", visible=False, size="sm")
            with gr.Column() as type_box:
                type_out = gr.Label(label="Tumor type (calibrated probability, shown from 1% to 99%)", num_top_classes=4,
                                    elem_id="type-out")
                record = gr.Markdown(elem_id="call-record")  # what this call was on the test split
            with gr.Column(visible=False) as stage_box:  # only for a model with a stage head
                stage_out = gr.Label(label="Stage (calibrated probability, shown from 1% to 99%)", num_top_classes=3,
                                     elem_id="stage-out")
            stage_md = gr.Markdown()  # the stage's basis, or why this model gives none
            gr.Markdown("### Treatment pathway (options for a tumor board)")
            pathway = gr.Markdown()
    with gr.Accordion("Raw output (JSON)", open=False):
        raw = gr.JSON()
    view = gr.State()
    point = gr.State()

    inputs = [upload, model, opacity, frame, window, center, width]
    # /predict's 13 outputs (their order is the API's), then the viewer's (web/viewer.py: VIEWER_OUTPUTS)
    outputs = [type_out, stage_out, stage_md, pathway, original, heat, info, raw, view, frame, notes, center, width,
               slider, zoom, centre, point, type_box, stage_box, deid_btn, report_btn, report_file, deid_file, outline,
               opacity, record]
    private = dict(api_visibility="private")
    asked = gr.State(None)  # the model the results on screen were asked of (viewer.model_picked)

    offer_switch = dict(fn=h.suggestion, inputs=raw, outputs=switch, queue=False, **private)  # none for a blank result

    held = [run, model, frame, report_btn, deid_btn, upload, switch]  # what HOLD_JS holds and RELEASE_JS lets go
    assert len(held) == HELD, "HOLD_JS and RELEASE_JS answer for HELD components"
    hold = dict(fn=None, inputs=None, outputs=held, js=HOLD_JS, **private)
    release = dict(fn=None, inputs=None, outputs=held, js=RELEASE_JS, **private)

    def let_go(step: gr.events.Dependency) -> gr.events.Dependency:
        """Release the hold where held work ends: ``step`` failed (then nothing after it runs), or, for the last step,
        succeeded. Gradio's ``then`` follows neither an error nor a job the server refused at join, so a hold let go
        only there stayed on and the page took no new work."""
        step.failure(**release)
        return step

    def analyse(event: gr.events.Dependency, held_already: bool = False, api: dict | None = None) -> None:
        """Hold the controls, blank the outputs, run the model, let go; offer the switch where a refused image fits
        another model. ``api``: the public name of the model step (the Analyse button's), else private."""
        start = event if held_already else event.then(**hold)
        start.then(viewer.remember_model, model, asked, queue=False, **private)  # what the results will belong to
        switched = let_go(let_go(start.then(h.clear_outputs, None, outputs, queue=False, **private)).then(
            **offer_switch))
        # a failure is a toast and one mark on the viewer, not "Error" on every output
        ran = let_go(switched.then(h.predict, inputs=inputs, outputs=outputs, show_progress_on=[slider],
                                   **(api or private)))
        ran.success(**release).then(**offer_switch)

    analyse(run.click(**hold), held_already=True, api=dict(api_name="predict"))
    analyse(switch.click(h.switch_model, raw, model, queue=False, **private))
    upload.upload(**hold)  # the file box holds the raw upload until it is cleaned: nothing may use it up
    # queued (not queue=False): the browser shows a queued event's error message, not just "Error"
    cleaned = upload.upload(h.rename_upload, upload, upload, **private)
    # a refused file: the upload box is emptied, ready again, and nothing of the previous case stays on screen
    cleaned.failure(**release).then(None, None, upload, js="() => null").then(
        viewer.clear_for_file, None, outputs, queue=False, **private).then(**offer_switch)
    analyse(cleaned.success(None, None, [frame, window], js=RESET_FRAME_JS), held_already=True)
    upload.clear(viewer.clear_for_file, None, outputs, queue=False, **private).then(**offer_switch)
    model.input(viewer.model_picked, [model, asked], [*outputs, asked], queue=False, **private).then(**offer_switch)
    if examples is not None:  # a sample case analyses on click, as an upload does
        analyse(examples.load_input_event.then(None, None, [frame, window], js=RESET_FRAME_JS))
    # a frame number beyond the file: the case stays on screen, the box shows its frame again, the range is named
    # Enter leaves the box, and leaving it with another frame typed shows that frame: a typed number had stayed
    # beside another frame's image; one path, as Enter then a click elsewhere had asked twice (the second refused).
    # Left for the Analyse button, the box is left as typed: that click analyses the frame (once).
    frame.submit(None, None, None, js="() => { document.activeElement?.blur(); return []; }", **private)
    typed_frame = frame.blur(viewer.left_frame, [view, frame], None, js=LEFT_FRAME_JS, **private)  # queued: it says
    analyse(typed_frame.success(None, None, None, js="() => null"))
    typed_frame.failure(viewer.back_if_beyond, [view, frame], frame, queue=False, **private)
    redraw_args = dict(inputs=[view, window, center, width, opacity, zoom, centre, point, outline],
                       outputs=[heat, slider], **private)
    # a drag or a typed value (the slider's box has no release): the newest value is drawn, none queue up behind it
    opacity.input(h.redraw, trigger_mode="always_last", **redraw_args)
    zoom.input(h.redraw, **redraw_args)
    outline.input(h.redraw, **redraw_args)
    centre.input(h.redraw, **redraw_args)
    heat.select(viewer.pick_point, [view, zoom], [point, centre, zoom], queue=False, **private).then(
        h.redraw, **redraw_args)
    window.input(h.preset_values, [view, window], [center, width], queue=False, **private).then(h.redraw, **redraw_args)
    for box in (center, width):  # Enter, or leaving the box (a typed value that was never applied misled)
        for typed in (box.submit, box.blur):
            typed(None, None, window, js="() => 'Manual'").then(h.redraw, **redraw_args)
    # the file boxes show once they hold a file (hidden while empty, blanked with the case)
    for button, build, sources, shown in ((deid_btn, downloads.deidentify, upload, deid_file),
                                          (report_btn, downloads.report, [upload, view], report_file)):
        let_go(button.click(**hold).then(build, sources, shown, **private)).success(**release).then(
            viewer.show_file, shown, shown, queue=False, **private)

    # shown once a recorded result is on screen (h.feedback_shown): before that there is nothing to answer
    with gr.Accordion("Your feedback on this output", open=True, visible=False) as fb_form:
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
    # a new (or no) result: the form starts blank, so last case's answers are never sent for this one
    raw.change(None, None, [*fields, fb_status], js=f"() => {json.dumps([*h.FEEDBACK_RESET, ''])}")
    raw.change(h.feedback_shown, raw, fb_form, queue=False, show_progress="hidden", **private)
    raw.change(h.feedback_choices, raw, fields[:6], queue=False, show_progress="hidden", **private)
    fb_btn.click(h.submit_feedback, inputs=[raw, fb_reader, fb_session, *fields, fb_key], outputs=fb_status,
                 api_name="feedback").success(None, None, fb_key, js=NEW_KEY_JS)
