"""The Analyse tab's viewer, Gradio side: what the viewer shows after an analysis, zoom and its centre, redraws
without running the model again, and blanking every output when the file or the model changes.

The outputs :func:`after_analysis` and :func:`cleared` fill, in order, are :data:`VIEWER_OUTPUTS`; they follow the
13 outputs ``/predict`` has always returned (kept in place for API clients).
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from ..explain.display import ZOOMS, display_scale
from .refusal import refusal
from . import analysis, auth, outputs, view_store

log = logging.getLogger(__name__)

#: The viewer outputs appended after /predict's first 13, in this order.
VIEWER_OUTPUTS = ("viewer", "zoom", "centre", "point", "type_box", "stage_box", "deid_btn", "report_btn",
                  "report_file", "deid_file", "outline", "opacity", "record")
ZOOM_CHOICES = [f"{z}x" for z in ZOOMS]
#: A tumor class's map: roughly what raised that class's score, which is not the lesion's outline (lung's maps do no
#: better than a random map at the deletion test; clinician walkthrough); an indeterminate result's top class too
VIEWER_LABEL = "Image ◀ ▶ Grad-CAM: regions that raised the top class's score (approximate), not a lesion outline"
VIEWER_HELP = ("<small><span class='compare-help'>Drag the handle to compare the image with its heatmap. </span>"
               "Scroll on the picture to magnify it (drag to pan, ↺ to reset), or pick a zoom below: it is rendered "
               "again from the scan's own pixels. Click the overview to zoom there; the buttons at the top right show "
               "the picture full screen or download it.</small>")
#: The viewer's class when there is no heatmap (a refusal): its compare handle, which compared the image with itself,
#: the second picture's edge (a faint line down the middle) and the help's sentence about them are hidden (:data:`CSS`).
NO_HEATMAP_CLASS = "no-heatmap"
_SECOND = "[data-testid='imageslider-image'] ~ [data-testid='imageslider-image']"
CSS = (f"#viewer.{NO_HEATMAP_CLASS} [data-testid='slider'], #viewer.{NO_HEATMAP_CLASS} {_SECOND} {{ display: none; }}\n"
       f"body:has(#viewer.{NO_HEATMAP_CLASS}) #viewer-help .compare-help {{ display: none; }}")
NO_HEATMAP_LABEL = "Image (no heatmap: the model gave no answer for this image)"
#: A no-tumor call's map (Grad-CAM of "normal" glowed red on a hilum, read as a lesion: clinician walkthrough)
NO_TUMOR_HEATMAP_LABEL = "Image ◀ ▶ Grad-CAM of the no-tumor call: where the model looked, not a lesion"


def viewer_label(view: analysis.View) -> str:
    """The compare slider's label: what its right-hand picture shows."""
    if view.heatmap is None:
        return NO_HEATMAP_LABEL
    return NO_TUMOR_HEATMAP_LABEL if view.heatmap_of_no_tumor else VIEWER_LABEL
OPACITY_LABEL = "Heatmap opacity"
NO_OPACITY_LABEL = "Heatmap opacity (no heatmap for this image)"
MODEL_CHANGED = "_Model changed: the results above were cleared. Press **Analyse** to read this scan with it._"


def zoom_factor(choice: str | None) -> int:
    """"2x" -> 2; anything else the viewer does not offer -> 1."""
    try:
        z = int(str(choice or "1").rstrip("x"))
    except ValueError:
        return 1
    return z if z in ZOOMS else 1


def _viewer(view: analysis.View | None, pictures: Any | None, zoomed: bool) -> Any:  # noqa: ANN401 - gr.update
    """The compare slider's value (image, overlay) and its label."""
    if view is None or pictures is None:
        return gr.update(value=None, label=VIEWER_LABEL)
    pair = (pictures.zoom_image, pictures.zoom_overlay) if zoomed else (pictures.image, pictures.overlay)
    return gr.update(value=(outputs.png_file(pair[0]), outputs.png_file(pair[1])), label=viewer_label(view))


def _centres(heatmap: bool) -> Any:  # noqa: ANN401 - gr.update
    """The zoom centres offered: no "Heatmap peak" where there is no heatmap (it meant the image centre there)."""
    if not heatmap:
        return gr.update(choices=analysis.CENTRE_CHOICES[1:], value=analysis.CENTRE_CHOICES[1])
    return gr.update(choices=analysis.CENTRE_CHOICES, value=analysis.CENTRE_CHOICES[0])


def after_analysis(a: analysis.Analysis, image_file: str, overlay_file: str) -> tuple[Any, ...]:
    """The viewer outputs of a new result: the whole scan in the slider, zoom back to 1x on the heatmap peak (the
    image centre without a heatmap), boxes shown only where they hold something (stage for a stage head, the DICOM
    copy for a DICOM)."""
    return (
        gr.update(value=(image_file, overlay_file), label=viewer_label(a.view),
                  elem_classes=[NO_HEATMAP_CLASS] if a.view.heatmap is None else []),
        "1x",
        _centres(a.view.heatmap is not None),
        None,
        gr.update(visible=a.type_display is not None),
        gr.update(visible=a.stage_display is not None),
        gr.update(visible=a.is_dicom),
        gr.update(visible=True),
        gr.update(value=None, visible=False),
        gr.update(value=None, visible=False),
        gr.update(visible=a.view.lesion is not None),
        # no heatmap (a refusal): the opacity has nothing to fade, and says so rather than moving for nothing
        gr.update(interactive=a.view.heatmap is not None,
                  label=OPACITY_LABEL if a.view.heatmap is not None else NO_OPACITY_LABEL),
        a.record_markdown,
    )


def cleared(note: str = "", frame: Any = None) -> tuple[Any, ...]:  # noqa: ANN401 - gr.update
    """Every output of the Analyse tab blank (the 13 of /predict, then :data:`VIEWER_OUTPUTS`): a changed file or
    model never leaves the previous case, its report or its de-identified copy on screen. The frame box is left as
    it is (an analysis about to run reads the frame asked for) unless ``frame`` says otherwise."""
    return (
        None, None, "", "", None, None, "", None, None, frame or gr.update(), note, gr.update(), gr.update(),
        gr.update(value=None, label=VIEWER_LABEL, elem_classes=[]), "1x", _centres(True), None,
        gr.update(visible=True), gr.update(visible=False), gr.update(visible=False), gr.update(visible=False),
        gr.update(value=None, visible=False), gr.update(value=None, visible=False), gr.update(visible=False),
        gr.update(interactive=True, label=OPACITY_LABEL),  # it sets the next analysis's opacity
        "",
    )


def clear_outputs():  # noqa: ANN201 - Gradio output tuple
    """Blank every result before a new analysis, and when the file is removed or refused."""
    return cleared()


def clear_for_file():  # noqa: ANN201 - Gradio output tuple
    """Blank every result when the file is removed or refused; its frame box goes with it."""
    return cleared(frame=gr.update(value=None, visible=False))


def clear_for_model():  # noqa: ANN201 - Gradio output tuple
    """Blank every result when the user picks another model (the results belonged to the previous one)."""
    return cleared(MODEL_CHANGED)


def remember_model(model: str | None) -> str | None:
    """The model an analysis about to run is asked of (kept in the page's session for :func:`model_picked`)."""
    return model


def model_picked(model: str | None, asked: str | None):  # noqa: ANN201 - Gradio output tuple
    """The model list's ``input`` (a choice, and also leaving the list: Gradio sends it on blur): the results are
    blanked only if ``model`` is not the one they were asked of (``asked``), then ``model`` is remembered. Tabbing
    through the list had wiped the case on screen."""
    if model == asked:
        return (*[gr.skip()] * len(cleared()), asked)
    return (*clear_for_model(), model)


def redraw(view: analysis.View | None, window: str | None = "File default", center: float | None = None,
           width: float | None = None, opacity: float = 0.45, zoom: str | None = "1x",
           centre: str | None = None, point: Any = None,  # noqa: ANN401 - whatever the State holds
           outline: bool = True,
           request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
           profile: gr.OAuthProfile | None = None):  # noqa: ANN201 - Gradio outputs
    """New display window, opacity, zoom, zoom centre or lesion outline on/off: redraw the pictures without running the model again.
    Returns (overview, compare slider); the plain image of /predict's output 4 is left as the analysis made it."""
    if view_store.dropped(view):
        raise refusal(view_store.DROPPED)
    view = own_view(view, request, profile)
    if view is None:
        return gr.skip(), gr.skip()
    _window_note(view, window, center, width)
    z = zoom_factor(zoom)
    p = view.display(window, center, width, analysis.opacity_value(opacity), z, centre, _point(point), outline is True)
    return outputs.png_file(p.overview), _viewer(view, p, zoomed=z > 1)


def _window_note(view: analysis.View, window: str | None, center: float | None, width: float | None) -> None:
    """Say so when the chosen display window cannot be applied: the picture unchanged is otherwise the only sign."""
    if not isinstance(window, str) or window == "File default":
        return
    if view.values is None:
        gr.Warning("Display windows need a DICOM's stored values: this image (PNG or JPEG) is shown as it is.")
    elif window == "Manual" and view.window_for(window, center, width) is None:
        gr.Warning("Give a centre and a width above 0: until then the file's own window is shown.")


def _point(point: Any) -> tuple[float, float] | None:  # noqa: ANN401 - whatever the State holds
    """A (row, column) kept in the session, or None for anything else."""
    if isinstance(point, (tuple, list)) and len(point) == 2:
        row, col = (analysis.finite(v) for v in point)
        if row is not None and col is not None:
            return row, col
    return None


def pick_point(view: analysis.View | None, zoom: str | None, evt: gr.SelectData,
               request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
               profile: gr.OAuthProfile | None = None):  # noqa: ANN201
    """A click on the overview: zoom around that point (2x if the view was not zoomed). The overview shows the
    whole scan at display resolution, so its pixel (x, y) is scan pixel (y, x) / scale. Owner-checked, as redraw."""
    index = evt.index if isinstance(evt.index, (list, tuple)) and len(evt.index) == 2 else (None, None)
    x, y = (analysis.finite(v) for v in index)  # the client sends the click: text, NaN or 1e400 are no point
    view = own_view(view, request, profile)
    if view is None or x is None or y is None:
        return gr.skip(), gr.skip(), gr.skip()
    h, w = view.pixels.shape[:2]
    scale = display_scale((h, w))
    row, col = min(max(y / scale, 0.0), h - 1.0), min(max(x / scale, 0.0), w - 1.0)
    log.debug("zoom centre chosen at %.0f, %.0f", row, col)
    return (row, col), analysis.CENTRE_CHOICES[2], zoom if zoom_factor(zoom) > 1 else "2x"


def own_view(view: Any, request: gr.Request | None, profile: gr.OAuthProfile | None) -> analysis.View | None:  # noqa: ANN401
    """The page's view, if the caller's login made it (another login on a borrowed page gets none)."""
    view = view_store.lookup(view)
    return view if view is not None and auth.is_owner_of(request, profile, view.created_by) else None


def _in_file(view: analysis.View, frame: float | None) -> bool:
    """Whether ``frame`` is a frame number of the file shown (a whole number from 1 to its frame count)."""
    number = analysis.finite(frame)
    return number is not None and number.is_integer() and 1 <= number <= view.n_frames


def check_frame(view: analysis.View | None, frame: float | None,
                request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
                profile: gr.OAuthProfile | None = None) -> None:
    """A typed frame number, checked against the shown file before its result is cleared: a number beyond the file
    keeps the case on screen (the caller puts the box back with :func:`back_if_beyond`) and says the range."""
    view = own_view(view, request, profile)
    if view is None or frame is None or frame == "":  # no result to keep, or the middle frame asked for
        return
    if not _in_file(view, frame):
        count = f"{view.n_frames} frames" if view.n_frames > 1 else "1 frame"
        raise refusal(f"This file has {count}: enter a whole number from 1 to {view.n_frames} "
                       f"(frame {view.frame_index + 1} is shown).")


def left_frame(view: analysis.View | None, frame: float | None,
               request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
               profile: gr.OAuthProfile | None = None) -> None:
    """The frame box left (Tab, a click elsewhere) with another frame typed: checked as on Enter, so that the frame
    is shown. A box that names the frame shown, or is empty, or a page with no result on screen (an analysis under
    way) stops here without a message; :func:`back_if_beyond` leaves such a box as it is. A typed number had
    stayed in the box, unapplied, beside another frame's image."""
    shown = own_view(view, request, profile)
    if shown is None or frame is None or frame == "" or analysis.finite(frame) == shown.frame_index + 1:
        raise gr.Error("Nothing to show.", visible=False, print_exception=False)
    check_frame(view, frame, request, profile)


def back_if_beyond(view: analysis.View | None, frame: float | None,
                   request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
                   profile: gr.OAuthProfile | None = None):  # noqa: ANN201 - Gradio outputs
    """The frame box back at the frame shown when it holds a number the file does not have (the message said the
    range); a frame of the file, or an empty box, stays as typed (the Analyse button may be reading it)."""
    shown = own_view(view, request, profile)
    if shown is None or frame in (None, "") or _in_file(shown, frame):
        return gr.skip()
    return gr.update(value=shown.frame_index + 1)


def show_file(path: Any):  # noqa: ANN201, ANN401 - a file component's value
    """Show a file box once it holds a file (report, de-identified copy); hidden while empty."""
    return gr.update(visible=bool(path))
