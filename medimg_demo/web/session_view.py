"""What the Reading session tab draws, free of Gradio: the case under the reader's display window and zoom (with
the model's heatmap once revealed), and the reader's own call beside the model's.

The session cases are 8-bit PNG test images, so "windowing" is a level/width on the 0-255 display values (what a
DICOM window does to modality values, applied to the display), and zoom is a 1x/2x/4x crop around a chosen centre,
rendered on the server at a fixed display size so that small (64-320 px) images are not shown postage-stamp sized.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from ..explain.display import colour_bar_panel
from ..feedback.reader_study import label_name
from ..probability_text import whole_percent
from ..tasks import stage_name

ZOOMS = ("1x", "2x", "4x")
#: Display settings of a new reader: the full 8-bit range, no zoom, centred.
DEFAULT_DISPLAY: dict[str, Any] = {"level": 128.0, "width": 255.0, "zoom": "1x", "pan_x": 50.0, "pan_y": 50.0}
#: Longer side of the rendered picture, in pixels.
DISPLAY_PX = 560


def display_settings(level: Any = None, width: Any = None, zoom: Any = None, pan_x: Any = None,
                     pan_y: Any = None) -> dict[str, Any]:
    """Bounded display settings from what the client sent (anything out of range falls back or is clipped)."""
    def num(v: Any, default: float, lo: float, hi: float) -> float:
        try:
            f = float(v)
        except (TypeError, ValueError):
            return default
        return float(np.clip(f, lo, hi)) if np.isfinite(f) else default

    d = DEFAULT_DISPLAY
    return {"level": num(level, d["level"], 0, 255), "width": num(width, d["width"], 1, 510),
            "zoom": zoom if zoom in ZOOMS else d["zoom"], "pan_x": num(pan_x, d["pan_x"], 0, 100),
            "pan_y": num(pan_y, d["pan_y"], 0, 100)}


def window(gray: np.ndarray, level: float, width: float) -> np.ndarray:
    """Level/width on the 8-bit display values: [level - width/2, level + width/2] maps to black..white."""
    lo = level - width / 2.0
    return np.clip((np.clip(gray, 0.0, 1.0) * 255.0 - lo) / max(width, 1.0), 0.0, 1.0)


def crop(arr: np.ndarray, zoom: str, pan_x: float, pan_y: float) -> np.ndarray:
    """The 1/zoom region of ``arr`` centred at (pan_x, pan_y) percent of the width and height, kept inside."""
    z = int(zoom.rstrip("x")) if zoom in ZOOMS else 1
    if z == 1:
        return arr
    h, w = arr.shape[:2]
    ch, cw = max(1, round(h / z)), max(1, round(w / z))
    top = int(np.clip(round(pan_y / 100.0 * h - ch / 2), 0, h - ch))
    left = int(np.clip(round(pan_x / 100.0 * w - cw / 2), 0, w - cw))
    return arr[top:top + ch, left:left + cw]


@lru_cache(maxsize=2)
def _jet() -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps["jet"](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0).astype(np.float32)


def render_case(gray: np.ndarray, settings: dict[str, Any] | None = None, heatmap: np.ndarray | None = None,
                opacity: float = 0.45) -> np.ndarray:
    """The case (or, with ``heatmap``, the heatmap blended over it, with its colour scale on the right as on the
    Analyse tab) under the display settings, as RGB uint8 with its longer side :data:`DISPLAY_PX` (bilinear)."""
    d = display_settings(**(settings or {}))
    g = window(gray, d["level"], d["width"])
    base = np.repeat(g[..., None] * 255.0, 3, axis=2)
    if heatmap is not None and heatmap.shape == gray.shape:
        idx = (np.clip(heatmap, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        base = base * (1.0 - opacity) + _jet()[idx] * opacity
    rgb = crop(np.clip(base + 0.5, 0, 255).astype(np.uint8), d["zoom"], d["pan_x"], d["pan_y"])
    h, w = rgb.shape[:2]
    scale = DISPLAY_PX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    shown = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
    if heatmap is None or heatmap.shape != gray.shape:
        return shown
    return np.concatenate([shown, colour_bar_panel(shown.shape[0], max(shown.shape[:2]))], axis=1)


def compare_markdown(own: dict[str, Any] | None, prediction: dict[str, Any] | None, model_id: str,
                     case: str = "") -> str:
    """The reader's own call beside the model's: "Your read: Adenocarcinoma, stage IIIa (confidence 4/5) · Model:
    Squamous cell carcinoma 81%, stage IIIa 77% - different type", in percent as the charts beside it; ``case``
    ("Case 3 of 20") first, as the progress line above the pictures is out of view by then."""
    if not own or not prediction:
        return ""
    yours = label_name(model_id, own.get("type"))
    if own.get("stage"):
        yours += f", {stage_name(own['stage'])}"
    if own.get("confidence"):
        yours += f" (confidence {int(own['confidence'])}/5)"
    typ, stage = prediction.get("type") or {}, prediction.get("stage") or {}
    status = prediction.get("status", "ok")
    if typ.get("label"):
        label = typ["label"]
        p = (typ.get("probabilities") or {}).get(label)
        model = f"{label_name(model_id, label)}" + (f" {whole_percent(p)}" if isinstance(p, (int, float)) else "")
        if stage.get("label"):
            sp = (stage.get("probabilities") or {}).get(stage["label"])
            model += f", {stage_name(stage['label'])}" + (f" {whole_percent(sp)}" if isinstance(sp, (int, float))
                                                           else "")
        same = "same type" if own.get("type") == label else "**different type**"
    elif status == "indeterminate" and prediction.get("top2"):
        top = ", ".join(f"{label_name(model_id, t['label'])} {whole_percent(t['probability'])}"
                        for t in prediction["top2"])
        model, same = f"indeterminate (top two: {top})", "no single type: 'Agree' keeps your own call"
    else:
        model, same = f"no answer ({status})", "'Agree' keeps your own call"
    first = f"{case} &nbsp;·&nbsp; " if case else ""
    return f"#### {first}Your read: {yours} &nbsp;·&nbsp; Model: {model} &nbsp;-&nbsp; {same}"
