"""What the web app does for one request, free of Gradio: file path in, display-ready outputs out.

Kept apart from ``app.py`` so the UI stays thin and the same path is tested without a browser.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .io import Study, read_file
from .overlay import gray_to_rgb, overlay
from .predict import Prediction, get_predictor
from .registry import ModelConfig, get_model, list_models
from .treatment import PATHWAY_NOTICE

log = logging.getLogger(__name__)

STAGE_NOT_ASSESSED = "Stage: not assessed by this model (its training data carry no stage labels)."


@dataclass(frozen=True)
class Analysis:
    prediction: Prediction
    type_scores: dict[str, float]
    stage_scores: dict[str, float] | None
    stage_text: str
    pathway_markdown: str
    original_rgb: np.ndarray
    overlay_rgb: np.ndarray
    info_markdown: str
    seconds: float


def model_choices() -> list[tuple[str, str]]:
    """(label shown, model id) for the model dropdown, default first."""
    models = list_models()
    default_id = get_model().id if models else None
    models.sort(key=lambda m: (m.id != default_id, m.task, m.id))
    return [(f"{m.task_title or m.task}: {m.id}", m.id) for m in models]


def default_model_id() -> str:
    return get_model().id


def sample_cases(per_class: int = 1) -> list[tuple[str, str, str]]:
    """(image path, model id, true label) of test-split cases per class for each model's task, where data is found.

    Only the shared data folder is read; nothing is copied into the repository.
    """
    import csv

    from .data import data_root

    out: list[tuple[str, str, str]] = []
    root = data_root()
    for cfg in list_models():
        manifest = root / cfg.task / "manifest.csv"
        if not manifest.is_file():
            continue
        taken: dict[str, int] = {}
        with open(manifest, newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("split") != "test" or taken.get(row["label"], 0) >= per_class:
                    continue
                taken[row["label"]] = taken.get(row["label"], 0) + 1
                out.append((str((root / cfg.task / row["image"]).resolve()), cfg.id, row["label"]))
    return out


def allowed_paths() -> list[str]:
    """Folders the web server may serve files from: only the data root, for the sample cases."""
    from .data import data_root

    root = data_root()
    return [str(root.resolve())] if root.is_dir() else []


def pathway_markdown(pred: Prediction) -> str:
    tp = pred.treatment
    options = "\n".join(f"- {o}" for o in tp.options)
    return (
        f"**{tp.summary}**\n\n{options}\n\n"
        f"<small>Source: {tp.source}</small>\n\n"
        f"> {PATHWAY_NOTICE}"
    )


def stage_text(pred: Prediction) -> str:
    if pred.stage_label is None:
        return STAGE_NOT_ASSESSED
    return f"Stage group **{pred.stage_label}**. _{pred.stage_note or ''}_"


def info_markdown(study: Study, cfg: ModelConfig, pred: Prediction, seconds: float) -> str:
    """Safe facts about the input and the model; never a DICOM identifier or a file name."""
    parts = [f"Model `{cfg.id}` (weights sha256 `{(cfg.weights_sha256 or 'unpinned')[:12]}`)"]
    parts.append(f"{study.source_format.upper()} {study.width}x{study.height} px")
    if study.modality:
        parts.append(f"modality {study.modality}")
    if study.pixel_spacing_mm:
        parts.append(f"pixel spacing {study.pixel_spacing_mm[0]:.3g} x {study.pixel_spacing_mm[1]:.3g} mm")
    if study.n_frames > 1:
        parts.append(f"frame {study.frame_index + 1} of {study.n_frames} shown")
    parts.append(f"heatmap: Grad-CAM for '{pred.heatmap_class}'")
    parts.append(f"{seconds * 1000:.0f} ms")
    return " · ".join(parts)


def analyse(path: str | Path, model_id: str | None = None, opacity: float = 0.45) -> Analysis:
    """Decode, predict, explain and render one upload. Raises InputError for files it cannot use."""
    t0 = time.perf_counter()
    study = read_file(path)
    predictor = get_predictor(model_id)
    pred = predictor.run(study, explain=True)
    assert pred.heatmap is not None
    over = overlay(pred.image, pred.heatmap, opacity)
    seconds = time.perf_counter() - t0
    log.info("Predicted %s with %s in %.0f ms", pred.type_label, predictor.cfg.id, seconds * 1000)
    return Analysis(
        prediction=pred,
        type_scores=pred.type_probs,
        stage_scores=pred.stage_probs,
        stage_text=stage_text(pred),
        pathway_markdown=pathway_markdown(pred),
        original_rgb=gray_to_rgb(pred.image),
        overlay_rgb=over,
        info_markdown=info_markdown(study, predictor.cfg, pred, seconds),
        seconds=seconds,
    )


def reblend(image: np.ndarray | None, heatmap: np.ndarray | None, opacity: float) -> np.ndarray | None:
    """Redraw the overlay at a new opacity without running the model again."""
    if image is None or heatmap is None:
        return None
    return overlay(np.asarray(image, dtype=np.float32), np.asarray(heatmap, dtype=np.float32), opacity)


def summary_json(a: Analysis) -> dict[str, Any]:
    return a.prediction.to_json()
