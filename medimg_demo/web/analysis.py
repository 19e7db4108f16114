"""The Analyse view, free of Gradio: a file path in, display-ready outputs out (scores, texts, rendered images)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..eval.call_record import call_record, record_markdown
from ..explain.display import Pictures, pictures
from ..explain.overlay import add_scale_bar, gray_to_rgb, overlay
from ..imaging.isolated import read_isolated
from ..imaging.study import Study
from ..imaging.windowing import CT_PRESETS, apply_window
from ..models.config import ModelConfig
from ..models.registry import get_model
from ..predict import AUTO, Prediction, predict_study
from ..probability_text import capped
from ..tasks import get_task, stage_name  # noqa: F401 - stage_name: used here and by callers
from ..treatment import PATHWAY_NOTICE

log = logging.getLogger(__name__)

STAGE_NOT_ASSESSED = "Stage: not assessed by this model (its training data carry no stage labels)."


WINDOW_CHOICES = ["File default", *[k.capitalize() for k in CT_PRESETS], "Manual"]
#: Where a zoomed view is centred: the heatmap's peak (the image centre without one), the centre, a clicked point.
CENTRE_CHOICES = ["Heatmap peak", "Image centre", "Chosen point"]


def finite(value: Any) -> float | None:
    """A client's number as a finite float; None for anything else (NaN, infinities, text, lists, booleans): an API
    client can send any JSON where the page sends a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:  # an integer of hundreds of digits
        return None
    return f if math.isfinite(f) else None


def opacity_value(value: Any, default: float = 0.45) -> float:
    """The heatmap opacity in [0, 1]; ``default`` for anything that is not a finite number."""
    f = finite(value)
    return default if f is None else min(max(f, 0.0), 1.0)


def readable(scores: dict[str, float] | None, name: Callable[[str], str]) -> dict[str, float] | None:
    """Probabilities keyed by readable names for the screen, from 1% to 99% (``probability_text``; the JSON keeps the
    model's raw labels and values)."""
    if scores is None:
        return None
    # highest first: classes the floor shows alike (1%) keep their order, as the Label lists ties as given
    return {name(k): capped(v) for k, v in sorted(scores.items(), key=lambda kv: -kv[1])}


@dataclass(frozen=True)
class View:
    """What redrawing the display needs (kept in the browser session, never sent to the client)."""

    pixels: np.ndarray  # default display, [0, 1]
    values: np.ndarray | None  # modality values (HU for CT) for other windows; None for PNG/JPEG
    invert: bool
    heatmap: np.ndarray | None  # None where the model refused the image: no explanation is shown
    spacing_mm: tuple[float, float] | None
    default_window: tuple[float, float] | None
    modality: str | None
    model_id: str = ""  # the model and frame of the shown result (the report describes exactly that)
    frame_index: int = 0
    n_frames: int = 1  # the file's frame count: a typed frame number is checked against it before anything clears
    created_by: str = ""  # the login the result was shown to ("" without logins): see auth.is_owner_of
    lesion: np.ndarray | None = None  # the model's lesion (bool mask, scan pixels), drawn as an outline
    image_sha256: str = ""  # the shown scan's pixel hash: the report checks it describes this scan
    heatmap_of_no_tumor: bool = False  # the map explains a no-tumor call: where the model looked, not a lesion

    def window_for(self, choice: str | None, center: float | None, width: float | None) -> tuple[float, float] | None:
        """(centre, width) for a window choice, or None for the file's default view."""
        if self.values is None or not choice or choice == "File default":
            return None
        if choice == "Manual":
            c, w = finite(center), finite(width)
            if c is None or w is None or not w > 0:
                return None  # forged (text, NaN, infinity) or missing: the file's own view
            return c, w
        return CT_PRESETS.get(choice.lower())

    def gray(self, choice: str | None = None, center: float | None = None, width: float | None = None) -> np.ndarray:
        """The grey picture under the chosen display window, [0, 1]."""
        window = self.window_for(choice, center, width)
        if window is None or self.values is None:
            return self.pixels
        return apply_window(self.values, window[0], window[1], invert=self.invert)

    def centre(self, mode: str | None, point: tuple[float, float] | None) -> tuple[float, float] | None:
        """The zoom centre (row, column in scan pixels) for a :data:`CENTRE_CHOICES` entry; None: the heatmap peak."""
        if mode == "Image centre":
            return (self.pixels.shape[0] - 1) / 2, (self.pixels.shape[1] - 1) / 2
        if mode == "Chosen point" and point is not None:
            return float(point[0]), float(point[1])
        return None

    def display(self, choice: str | None = None, center: float | None = None, width: float | None = None,
                opacity: float = 0.45, zoom: int = 1, mode: str | None = None,
                point: tuple[float, float] | None = None, outline: bool = True) -> Pictures:
        """The viewer's pictures at display resolution: the whole scan and its ``zoom``x region (see
        :func:`medimg_demo.explain.display.pictures`), with the lesion outlined unless ``outline`` is off."""
        return pictures(self.gray(choice, center, width), self.heatmap, self.spacing_mm, opacity, zoom,
                        self.centre(mode, point), lesion=self.lesion if outline else None)

    def render(self, choice: str | None = None, center: float | None = None, width: float | None = None,
               opacity: float = 0.45) -> tuple[np.ndarray, np.ndarray]:
        """(image, overlay) as RGB uint8 under the chosen display window, with a scale bar where spacing is known."""
        gray = self.gray(choice, center, width)
        image = add_scale_bar(gray_to_rgb(gray), self.spacing_mm)
        if self.heatmap is None:
            return image, image
        over = add_scale_bar(overlay(gray, self.heatmap, opacity), self.spacing_mm)
        return image, over


@dataclass(frozen=True)
class Analysis:
    """Everything the Analyse tab shows for one upload."""

    prediction: Prediction
    type_scores: dict[str, float]
    stage_scores: dict[str, float] | None
    stage_text: str
    pathway_markdown: str
    original_rgb: np.ndarray
    overlay_rgb: np.ndarray
    info_markdown: str
    seconds: float
    view: View
    warnings: tuple[str, ...]
    status_markdown: str
    n_frames: int
    frame_index: int
    #: The viewer's pictures (display resolution, whole scan, zoom 1) and the scores under readable names.
    pictures: Pictures | None = None
    type_display: dict[str, float] | None = None
    stage_display: dict[str, float] | None = None
    is_dicom: bool = False
    record_markdown: str = ""  # what this call was on the test split (eval.call_record)


def status_markdown(pred: Prediction, auto: bool = False) -> str:
    """The card shown instead of an answer for a refused or indeterminate case ("" for an answer)."""
    if pred.status == "refused":
        return f"### ⚠ Not an image for {'any bundled' if auto else 'this'} model: no answer\n{pred.reason}"
    if pred.status == "indeterminate":
        return f"### ⚠ Indeterminate\n{pred.reason}"
    return ""


def pathway_markdown(pred: Prediction) -> str:
    """The pathway with its options, source and the tumor-board notice (none for a refused or unsure case)."""
    tp = pred.treatment
    if tp is None:
        return "_No pathway: the model gave no answer for this image._"
    options = "\n".join(f"- {o}" for o in tp.options)
    return (
        f"**{tp.summary}**\n\n{options}\n\n"
        f"<small>Source: {tp.source}</small>\n\n"
        f"> {PATHWAY_NOTICE}"
    )


def lesion_text(pred: Prediction) -> str:
    """The lesion's measurements and, where a guideline stages by size, its size category (or why there is none)."""
    spec = get_task(pred.task)
    lines = []
    if pred.lesion is not None:
        lines.append(f"**Lesion (model outline):** {pred.lesion.describe()}.")
    if pred.size_category is not None:
        c = pred.size_category
        lines.append(f"**Size category {c['label']}** (imaging size estimate; {c['rule']}). _{c['note']}_")
    elif spec.size_rule is not None and pred.lesion is not None:
        lines.append("Size category: not measurable (the image carries no pixel spacing, so the lesion has no size "
                     "in mm). A DICOM with Pixel Spacing or ultrasound region calibration can be measured.")
    return "\n\n".join(lines)


def stage_text(pred: Prediction) -> str:
    """The stage line with its basis (or why the model does not stage), then the lesion and its size category."""
    if pred.status != "ok":
        return ""
    lesion = lesion_text(pred)
    if pred.stage_label is None:
        spec = get_task(pred.task)
        if pred.type_label == spec.normal_label and spec.lesion_column:
            return f"No lesion outlined or staged: the model's call is {spec.label_name(pred.type_label)}."
        note = spec.staging_note
        parts = [lesion] if lesion else []
        if note and (not lesion or spec.size_rule is None):  # breast: the lesion line already says how it is sized
            parts.append(f"_{note}_")
        return "\n\n".join(parts) or STAGE_NOT_ASSESSED
    group = stage_name(pred.stage_label).removeprefix("Stage ")
    return "\n\n".join(x for x in (f"Stage group **{group}**. _{pred.stage_note or ''}_", lesion) if x)


def info_markdown(study: Study, cfg: ModelConfig, pred: Prediction, seconds: float, auto: bool = False) -> str:
    """Safe facts about the input and the model; never a DICOM identifier or a file name. ``auto``: the model was
    picked from the image (a refusal there names no model: none fits)."""
    model = f"Model `{cfg.id}` (weights sha256 `{(cfg.weights_sha256 or 'unpinned')[:12]}`)"
    parts = ["Auto: no bundled model fits this image" if auto and pred.status == "refused"
             else model + (", picked by Auto" if auto else "")]
    parts.append(f"{study.source_format.upper()} {study.width}x{study.height} px")
    if study.modality:
        parts.append(f"modality {study.modality}")
    if study.pixel_spacing_mm:
        parts.append(f"pixel spacing {study.pixel_spacing_mm[0]:.3g} x {study.pixel_spacing_mm[1]:.3g} mm"
                     + (f" (from the {study.spacing_source})" if study.spacing_source else ""))
    if study.window is not None and study.values is not None:
        parts.append(f"default window C {study.window[0]:g} / W {study.window[1]:g}")
    if study.n_frames > 1:
        parts.append(f"frame {study.frame_index + 1} of {study.n_frames} shown")
    if pred.heatmap_class:
        parts.append(f"heatmap: Grad-CAM for '{get_task(pred.task).label_name(pred.heatmap_class)}'")
    if pred.ood:
        parts.append(f"out-of-distribution score {pred.ood['score']:.3g} (refused above {pred.ood['threshold']:.3g}, "
                     f"{pred.ood['method']})")
    parts.append(f"{seconds * 1000:.0f} ms")
    return " · ".join(parts)


def analyse(
    path: str | Path | bytes,
    model_id: str | None = None,
    opacity: float = 0.45,
    frame: int | None = None,
    window: str | None = None,
    center: float | None = None,
    width: float | None = None,
) -> Analysis:
    """Decode, predict, explain and render one upload. Raises InputError for files it cannot use.

    ``frame`` is 0-based (default: the middle frame); ``window``/``center``/``width`` change only the display,
    never what the model sees.
    """
    t0 = time.perf_counter()
    study = read_isolated(path, frame)  # in a child process with memory and time limits (bytes: a cleaned upload)
    pred = predict_study(study, model_id, explain=True)
    cfg = get_model(pred.model_id)
    view = View(
        pixels=study.pixels,
        values=study.values,
        invert=study.invert,
        heatmap=pred.heatmap,
        spacing_mm=study.pixel_spacing_mm,
        default_window=study.window,
        modality=study.modality,
        model_id=pred.model_id,
        frame_index=study.frame_index,
        n_frames=study.n_frames,
        lesion=pred.lesion_mask,
        image_sha256=pred.image_sha256,
        heatmap_of_no_tumor=pred.heatmap is not None and pred.heatmap_class == get_task(pred.task).normal_label,
    )
    original, over = view.render(window, center, width, opacity)
    shown = view.display(window, center, width, opacity)
    spec = get_task(pred.task)
    type_scores = pred.type_probs if pred.status == "ok" else None  # no type is named without an answer
    seconds = time.perf_counter() - t0
    log.info("%s: %s with %s in %.0f ms", pred.status, pred.type_label, cfg.id, seconds * 1000)
    return Analysis(
        prediction=pred,
        type_scores=type_scores,
        stage_scores=pred.stage_probs,
        stage_text=stage_text(pred),
        pathway_markdown=pathway_markdown(pred),
        original_rgb=original,
        overlay_rgb=over,
        info_markdown=info_markdown(study, cfg, pred, seconds, auto=model_id == AUTO),
        seconds=seconds,
        view=view,
        warnings=study.warnings,
        status_markdown=status_markdown(pred, auto=model_id == AUTO),
        n_frames=study.n_frames,
        frame_index=study.frame_index,
        pictures=shown,
        type_display=readable(type_scores, spec.label_name),
        stage_display=readable(pred.stage_probs, stage_name),
        is_dicom=study.source_format.lower() == "dicom",
        record_markdown=record_markdown(call_record(cfg, pred.type_label), spec.label_name) if type_scores else "",
    )


def summary_json(a: Analysis) -> dict[str, Any]:
    """The JSON the API returns for an analysis (no pixels, no identifiers)."""
    return a.prediction.to_json()
