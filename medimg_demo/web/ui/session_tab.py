"""The Reading session tab: each reader's own call first (required), then the model's output beside it and the
aided answer (required); the case under a display window and zoom."""

from __future__ import annotations

import json

import gradio as gr

from ...feedback.cases import MAX_CASES, MAX_SEED
from .. import auth
from .. import reading as r
from ..session import AGREE
from ..session_view import DEFAULT_DISPLAY, ZOOMS
from .common import IMAGE_BUTTONS, label_dropdown, rating


def _focus_js(selector: str) -> str:
    """Browser code that moves the keyboard focus to the first visible match of ``selector`` (made focusable if it is
    text), tried for a few frames while Gradio shows it; not while the reader is typing in a field."""
    return ("() => { let tries = 0; const go = () => { if (document.activeElement?.matches?.('input[type=text], "
            "input:not([type]), textarea')) return; const el = [...document.querySelectorAll(%s)]"
            ".find(e => e.offsetParent); if (el) { if (!el.matches('input, button, textarea, select, a')) "
            "el.tabIndex = -1; el.focus(); return; } if (++tries < 30) requestAnimationFrame(go); }; "
            "requestAnimationFrame(go); return []; }" % json.dumps(selector))


def _display_controls() -> tuple[list[gr.components.Component], gr.Button]:
    """Level/width on the 8-bit display values, zoom and its centre (percent of width and height)."""
    d = DEFAULT_DISPLAY
    with gr.Accordion("Display: window and zoom", open=True):
        with gr.Row():
            level = gr.Slider(0, 255, value=d["level"], step=1, label="Window level (brightness, 0-255)")
            width = gr.Slider(1, 510, value=d["width"], step=1, label="Window width (contrast; smaller = more)")
            zoom = gr.Radio(list(ZOOMS), value=d["zoom"], label="Zoom", elem_id="session-zoom")
        with gr.Row():
            pan_x = gr.Slider(0, 100, value=d["pan_x"], step=1, label="Zoom centre, left to right (%)")
            pan_y = gr.Slider(0, 100, value=d["pan_y"], step=1, label="Zoom centre, top to bottom (%)")
            reset = gr.Button("Reset display", size="sm")
    return [level, width, zoom, pan_x, pan_y], reset


#: Where the browser keeps the last session it started or resumed (its name, model, size and seed: no answer, no
#: image, nothing of a patient), so that a reload offers it again instead of "session-1".
LAST_SESSION_KEY = "medimg-last-reading-session"
_FIELDS = dict(session_id="session-1", n_cases=20, seed=0)


def _remember_js() -> str:
    return f"(...fields) => {{ try {{ localStorage.setItem('{LAST_SESSION_KEY}', JSON.stringify(fields)); }} catch (e) {{}} }}"


def _offer_last_js(models: list[str]) -> str:
    """The last session's fields, where the form still holds its defaults and the model is still served."""
    default = [_FIELDS["session_id"], models[0] if models else None, _FIELDS["n_cases"], _FIELDS["seed"]]
    return (f"(...now) => {{ const keep = Array(4).fill({{__type__: 'update'}}); let last = null; "
            f"try {{ last = JSON.parse(localStorage.getItem('{LAST_SESSION_KEY}')); }} catch (e) {{ return keep; }} "
            f"const untouched = JSON.stringify(now) === JSON.stringify({json.dumps(default)}); "
            f"const fits = Array.isArray(last) && last.length === 4 && typeof last[0] === 'string' "
            f"&& {json.dumps(models)}.includes(last[1]) && Number.isInteger(last[2]) && Number.isInteger(last[3]); "
            f"return untouched && fits ? last : keep; }}")


def session_tab(choices: list[tuple[str, str]], tab: gr.Tab | None = None) -> None:
    gr.Markdown(
        "Every reader of a session reads the same cases (drawn per class from the test split with the seed). "
        "For each case, record **your own call first**; the model's output and heatmap are shown after, beside your "
        "call, for your aided answer. Both answers are required."
    )
    state = gr.State()
    with gr.Row():
        reader = gr.Textbox(label="Reader pseudonym", placeholder="e.g. reader07", visible=not auth.logins_on())
        session_id = gr.Textbox(label="Session id", value=_FIELDS["session_id"], max_length=200)
        model = gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, label="Model")
        n_cases = gr.Number(label="Cases", value=_FIELDS["n_cases"], precision=0, minimum=1, maximum=MAX_CASES)
        seed = gr.Number(label="Seed", value=_FIELDS["seed"], precision=0, minimum=0, maximum=MAX_SEED)
    start = gr.Button("Start or resume session", variant="primary")
    progress = gr.Markdown(elem_id="session-progress")
    # the case, its heatmap and the display controls: shown while a case is being read (not before the session
    # starts, nor once it is complete, where they stood as empty frames)
    # the own read beside the case, so that its questions are on a laptop's screen with the case (below it, they
    # were under the fold at 1440x900); once recorded it goes, and the case and its heatmap take the whole width
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, visible=False, elem_id="session-case-panel") as case_panel:
            with gr.Row(equal_height=True):
                image = gr.Image(label="Case", type="filepath", interactive=False, format="png",
                                 buttons=IMAGE_BUTTONS, height=560, elem_id="session-case")
                # shown once the own read is recorded: before, an empty frame took half the width from the case
                overlay_img = gr.Image(label="Model heatmap (after your read)", type="filepath", interactive=False,
                                       format="png", buttons=IMAGE_BUTTONS, height=560, elem_id="session-heatmap",
                                       visible=False)
            display, reset = _display_controls()
        with gr.Column(scale=2, min_width=320, visible=False, elem_id="session-own-read") as unaided:
            with gr.Group():
                gr.Markdown("#### 1. Your own read (before seeing the model) - required")
                r_type = gr.Radio([], label="Tumor type (or 'Cannot assess')")
                r_stage = gr.Radio([], label="Stage", visible=False)
                r_conf = rating("Your confidence (1 = guess, 5 = certain; optional)",
                                elem_id="session-own-confidence")
                record = gr.Button("Record my read and show the model", variant="primary")
    with gr.Group(visible=False) as aided:
        gr.Markdown("#### 2. The model's output - your aided answer")
        compare = gr.Markdown(elem_id="session-compare")
        with gr.Row():
            m_type = gr.Label(label="Model: tumor type (shown from 1% to 99%)", num_top_classes=4)
            m_stage = gr.Label(label="Model: stage (shown from 1% to 99%)", num_top_classes=3)
        m_stage_md = gr.Markdown()
        m_path = gr.Markdown()
        with gr.Row():
            type_agree = gr.Radio(list(AGREE), label="The model's tumor type (required)",
                                  info="Where the model gives no type, 'Agree' keeps your own call.",
                                  elem_id="session-type-agree")
            corrected_type = label_dropdown("Your type, if you disagree (required then)")
        with gr.Row():
            stage_agree = gr.Radio(list(AGREE), label="The model's stage")
            corrected_stage = label_dropdown("Your stage, if you disagree")
            pathway_agree = gr.Radio(list(AGREE), label="The treatment pathway")
        with gr.Row():
            plaus = rating("Heatmap plausibility (1 = implausible, 5 = convincing; optional)")
            conf = rating("Your confidence now (1 = guess, 5 = certain; optional)")
        comment = gr.Textbox(label="Comment", lines=2, max_length=4000)
        nxt = gr.Button("Submit my answer and go to the next case", variant="primary")
    fields = [type_agree, stage_agree, pathway_agree, corrected_type, corrected_stage, plaus, conf, comment]
    view_out = [state, progress, image, unaided, aided]
    revealed = [*view_out, m_type, m_stage, m_stage_md, m_path, overlay_img, compare, case_panel,
                stage_agree, corrected_stage, pathway_agree, plaus]  # and the questions about what the model showed
    assert len(revealed) == r.RESUME_OUTPUTS
    started = start.click(r.session_start, [reader, session_id, model, n_cases, seed],
                          [*view_out, r_type, r_stage, corrected_type, corrected_stage, stage_agree, case_panel],
                          api_name="session_start")
    # the own read of the case in hand stored already (a reload after the model was shown): the model beside it
    started.success(r.session_resume, state, revealed, api_visibility="private", show_progress_on=[progress])
    # no heatmap of a case read before (another session, or this one's) beside a case not read yet
    started.success(None, None, overlay_img, js="() => ({__type__: 'update', value: null, visible: false})",
                    api_visibility="private")
    # a reload had put the form back to "session-1": the browser offers the last session again
    named = [session_id, model, n_cases, seed]
    started.success(None, named, None, js=_remember_js(), api_visibility="private")
    started.success(None, None, None, js=_focus_js("#session-own-read input[type=radio]"), api_visibility="private")
    if tab is not None:
        tab.select(None, named, named, js=_offer_last_js([value for _, value in choices]), api_visibility="private")
    # a missing answer: the validator marks the field (nothing runs); a later failure shows on the progress line
    # only, so that an error never covers the case image
    read = record.click(r.session_unaided, [state, r_type, r_stage, r_conf], revealed, api_name="session_read",
                        validator=r.validate_read, show_progress_on=[progress])
    # the focus goes where the reader goes on: its button had gone with the own read (keyboard walkthrough), so a
    # screen reader fell back to the page's top; now to the comparison of both calls, then to the next own read
    read.success(None, None, None, js=_focus_js("#session-compare"), api_visibility="private")
    nxt_done = nxt.click(
        r.session_aided,
        [state, *fields],
        [*view_out, m_type, m_stage, m_stage_md, m_path, overlay_img, compare, r_type, r_stage, r_conf, *fields,
         case_panel],
        api_name="session_feedback", validator=r.validate_aided, show_progress_on=[progress],
    )
    # the next case opens whole (the server dropped the zoom; the window stays)
    zoom_keys = ("zoom", "pan_x", "pan_y")
    nxt_done.success(None, None, display[2:], js=f"() => {json.dumps([DEFAULT_DISPLAY[k] for k in zoom_keys])}",
                     api_visibility="private")
    nxt_done.success(None, None, None, js=_focus_js("#session-own-read input[type=radio]"), api_visibility="private")
    defaults = tuple(DEFAULT_DISPLAY[k] for k in ("level", "width", "zoom", "pan_x", "pan_y"))
    # the browser resets the controls itself (no server event), then the server draws the case again
    reset.click(None, None, display, js=f"() => {json.dumps(list(defaults))}").then(
        r.session_redraw, [state, *display], [image, overlay_img], api_visibility="private", show_progress="hidden")
    for control in display:  # a slider: dragged, or a value typed in its box (its release missed a typed one);
        # the newest value is drawn, none queue up behind it
        if isinstance(control, gr.Slider):
            control.input(r.session_redraw, [state, *display], [image, overlay_img], api_visibility="private",
                          show_progress="hidden", trigger_mode="always_last")
        else:
            control.change(r.session_redraw, [state, *display], [image, overlay_img], api_visibility="private",
                           show_progress="hidden")
