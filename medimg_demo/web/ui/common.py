"""What several tabs share: the research-use banner, image buttons, the submission-key script, the feedback form."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ...notice import DISCLAIMER
from .. import handlers as h

BANNER = (
    "<div style='background:#fff3cd;color:#664d03;border:1px solid #ffecb5;padding:10px 14px;border-radius:6px'>"
    f"<b style='color:#664d03'>⚠ {DISCLAIMER.split(' - ')[0]} - not a medical device.</b> "
    f"{DISCLAIMER.split('. ', 1)[1]}</div>"
)

#: Download and full screen only: no "share to Hugging Face" button on any image.
IMAGE_BUTTONS: list[Any] = ["download", "fullscreen"]
#: A fresh submission key in the browser (crypto.randomUUID needs a secure context; plain http gets a fallback).
NEW_KEY_JS = ("() => (window.crypto && crypto.randomUUID) ? crypto.randomUUID() : "
              "Date.now().toString(36) + '-' + Math.random().toString(36).slice(2, 12)")


def label_dropdown(label: str, **kwargs: Any) -> gr.Dropdown:
    """A list of a model's labels, filled when a model is known (choices empty until then). Custom values pass the
    component, since an API client sends text and the server accepts only the model's labels; the API schema says
    "a string", not the empty choice list it would otherwise publish (no value allowed)."""
    dropdown = gr.Dropdown([], label=label, value=None, allow_custom_value=True, **kwargs)
    dropdown.api_info = lambda: {"type": "string"}  # type: ignore[method-assign]
    return dropdown


def _numbers_as_text(preprocess: Any) -> Any:  # noqa: ANN401 - Gradio's method
    """``gr.Radio.preprocess`` taking a number choice as its text too: Gradio's API listing (``view_api``) quotes every
    choice (the ratings read ``Literal['1', ..., '5']``), and a client sending ``'4'`` as listed was refused ("not in
    the list of choices"). On the class: Gradio builds a new instance of it when a page's component changes."""
    def preprocess_text_too(self: gr.Radio, payload: Any) -> Any:  # noqa: ANN401
        if isinstance(payload, str):
            values = [v for _, v in self.choices]
            if payload not in values:
                payload = next((v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
                                and str(v) == payload.strip()), payload)
        return preprocess(self, payload)

    preprocess_text_too._medimg_numbers = True  # type: ignore[attr-defined]
    return preprocess_text_too


def take_numbers_as_text() -> None:
    """Let every Radio of numbers take them as text too (see :func:`_numbers_as_text`); once per process."""
    if not getattr(gr.Radio.preprocess, "_medimg_numbers", False):
        gr.Radio.preprocess = _numbers_as_text(gr.Radio.preprocess)  # type: ignore[method-assign]


#: The theme's fonts, Gradio's own, with their Bold files for bold text: the SemiBold files Gradio ships (weight 600,
#: which its default theme uses for bold) hold 55 glyphs (Source Sans Pro: "A", "B" and Cyrillic) and 75 (IBM Plex
#: Mono), so every bold line mixed their A and B with another font's other letters ("Stage IIIA" read "Stage III" and
#: a small capital). A bold weight of 600 asked for is drawn with 700, the closest heavier face.
FONTS = [gr.themes.LocalFont("Source Sans Pro", weights=(400, 700)), "ui-sans-serif", "system-ui", "sans-serif"]
MONO_FONTS = [gr.themes.LocalFont("IBM Plex Mono", weights=(400, 700)), "ui-monospace", "Consolas", "monospace"]


def theme() -> gr.themes.Base:
    """Gradio's default theme with :data:`FONTS` and :data:`MONO_FONTS`, its primary buttons two shades darker:
    their white text read at a contrast of 2.8 (3.6 in dark mode), where WCAG asks 4.5 for text; 5.2 now. The open
    tab's name likewise (:data:`CONTRAST_CSS`). Subdued text (a slider's ends, hints) and the placeholders in empty
    fields ("e.g. reader07") on white read at 1.9, 4.8 now; dark mode's placeholders at 3.1, lighter now."""
    return gr.themes.Default(font=FONTS, font_mono=MONO_FONTS).set(
        button_primary_background_fill="*primary_700", button_primary_background_fill_hover="*primary_800",
        button_primary_background_fill_dark="*primary_700", button_primary_background_fill_hover_dark="*primary_800",
        body_text_color_subdued="*neutral_500", input_placeholder_color="*neutral_500",
        input_placeholder_color_dark="*neutral_400")


#: The open tab's name in orange text: Gradio's accent (orange 500) on white read at 2.8; orange 700 reads at 5.2.
#: In dark mode it stays orange 500 (6.8 on the dark page; orange 700 would read at 3.7 there).
CONTRAST_CSS = ("[role='tab'][aria-selected='true'] { color: var(--primary-700); }\n"
                ".dark [role='tab'][aria-selected='true'] { color: var(--primary-500); }")


#: A field's validation message (an answer missing) above the field, not over its choices: Gradio draws it on a
#: layer covering the whole field, and the stage options it asked for were hidden under it (clinician walkthrough).
VALIDATION_CSS = """
.block:has(> .wrap > .validation-error) { overflow: visible !important; margin-top: 3.2em; }
.wrap:has(> .validation-error) { top: -3.2em !important; bottom: auto !important; height: auto !important;
  min-height: 0 !important; background: none !important; }
.wrap > .validation-error { position: static !important; }
"""


def rating(label: str, **kwargs: Any) -> gr.Radio:
    """A 1-5 rating the reader sets or leaves unset (stored as no answer). A slider always holds a value: its
    starting 3 was stored as every untouched rating, as if readers had chosen it."""
    return gr.Radio([1, 2, 3, 4, 5], value=None, label=label, **kwargs)


def feedback_fields() -> list[Any]:
    """The per-output feedback form, in the order h.submit_feedback and h.session_aided take it: agree type / stage /
    pathway, corrected type / stage, heatmap plausibility, confidence, comment (the first six follow the result shown:
    h.feedback_choices)."""
    with gr.Row():
        agree = [gr.Radio(h.AGREE, label=label, elem_id=f"fb-{key}-agree")
                 for label, key in ((h.TYPE_QUESTION, "type"), ("Stage", "stage"), ("Treatment pathway", "pathway"))]
    with gr.Row():  # the model's labels under readable names, set with each result (h.feedback_choices)
        corrected = [label_dropdown(f"Your {what}, if you disagree") for what in ("type", "stage")]
    with gr.Row():
        plaus = rating("Heatmap plausibility (1 = implausible, 5 = convincing; optional)")
        conf = rating("Your confidence (1 = guess, 5 = certain; optional)")
    comment = gr.Textbox(label="Comment", lines=2, max_length=4000)
    return [*agree, *corrected, plaus, conf, comment]


def no_empty_temp_files() -> None:
    """Gradio 6.31's ``gr.File`` opens an empty temporary file in its cache on every event that takes a file box and
    never removes it (300 events left 300 files in a live hostile run; the reaper removed them only after
    ``MEDIMG_RAW_UPLOAD_TTL_S``). Its file-path preprocessing is set to return the same path without that file, on
    the class: Gradio rebuilds a box shown with new properties from its class (so a per-box change is lost), and a
    subclass would make Gradio write a ``.pyi`` stub into this package on import. Idempotent."""
    from gradio.utils import NamedString

    gradios = gr.File._process_single_file
    if getattr(gradios, "medimg_quiet", False):
        return

    def process(self: gr.File, f: Any) -> Any:
        if self.type == "filepath" and not self.file_types:
            return NamedString(f.path)  # what Gradio returns, without the empty temporary file beside it
        return gradios(self, f)

    process.medimg_quiet = True  # type: ignore[attr-defined]
    gr.File._process_single_file = process  # type: ignore[method-assign]


no_empty_temp_files()  # before any tab builds a file box
