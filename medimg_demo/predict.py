"""Predictor: loads a model once and turns a Study into a Prediction (type, stage, pathway, heatmap)."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .explain.gradcam import gradcam
from .imaging.study import Study
from .models.config import ModelConfig
from .models.network import TumorNet, load_model
from .models.preprocess import model_pixels, to_tensor
from .models.registry import get_model
from .tasks import get_task
from .treatment import Pathway, pathway

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """What one image gets: calibrated type (and stage) probabilities, the pathway, and the heatmap."""

    model_id: str
    task: str
    type_label: str
    type_probs: dict[str, float]
    stage_label: str | None
    stage_probs: dict[str, float] | None
    stage_note: str | None
    treatment: Pathway
    image: np.ndarray  # the displayed grey image, (H, W) in [0, 1]
    heatmap: np.ndarray | None  # Grad-CAM for the shown type class, (H, W) in [0, 1]
    heatmap_class: str | None
    image_sha256: str
    modality: str | None
    pixel_spacing_mm: tuple[float, float] | None

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of ``predict --json``: no pixels, no identifiers."""
        return {
            "model": self.model_id,
            "task": self.task,
            "type": {"label": self.type_label, "probabilities": self.type_probs},
            "stage": None
            if self.stage_label is None
            else {"label": self.stage_label, "probabilities": self.stage_probs, "note": self.stage_note},
            "treatment": {
                "summary": self.treatment.summary,
                "options": self.treatment.options,
                "source": self.treatment.source,
                "notice": self.treatment.to_dict()["notice"],
            },
            "heatmap_class": self.heatmap_class,
            "image_sha256": self.image_sha256,
            "modality": self.modality,
            "pixel_spacing_mm": list(self.pixel_spacing_mm) if self.pixel_spacing_mm else None,
        }


def _probs(logits: torch.Tensor, labels: list[str], temperature: float) -> dict[str, float]:
    p = torch.softmax(logits[0].float() / max(temperature, 1e-3), dim=0)
    return {label: float(v) for label, v in zip(labels, p.tolist())}


def bf16_supported() -> bool:
    """True where the CPU has native bf16 matrix support (oneDNN), so bf16 inference is a speed-up, not a slowdown."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def default_precision() -> str:
    """``MEDIMG_PRECISION`` (fp32 or bf16); fp32 unless set, so results match the evaluated metrics exactly."""
    value = os.environ.get("MEDIMG_PRECISION", "fp32").lower()
    if value == "bf16" and not bf16_supported():
        log.warning("MEDIMG_PRECISION=bf16 but this CPU has no native bf16 support; using fp32")
        return "fp32"
    return value if value in ("fp32", "bf16") else "fp32"


class Predictor:
    """One loaded model; ``run`` is thread-safe (one inference at a time per model).

    ``precision="bf16"`` runs the forward and Grad-CAM under bf16 autocast with channels_last memory (faster on
    CPUs with AVX512-BF16/AMX); benchmarks/predict_latency.py reports its speed and its difference from fp32.
    """

    def __init__(self, cfg: ModelConfig, model: TumorNet | None = None, precision: str | None = None) -> None:
        self.cfg = cfg
        self.model = model if model is not None else load_model(cfg)
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)  # Grad-CAM needs gradients of activations only, not of weights
        self.precision = precision or default_precision()
        if self.precision == "bf16":
            self.model = self.model.to(memory_format=torch.channels_last)
        self._lock = threading.Lock()

    def run(self, study: Study, explain: bool = True, target: str | None = None) -> Prediction:
        """Predict type (and stage), look up the pathway, and explain the shown type class with Grad-CAM."""
        cfg = self.cfg
        x = to_tensor(model_pixels(study, cfg.input), cfg.input)
        bf16 = self.precision == "bf16"
        if bf16:
            x = x.contiguous(memory_format=torch.channels_last)
        target_idx = None if target is None else cfg.type_labels.index(target)
        with self._lock, torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if explain:
                ex = gradcam(self.model, x, "type", cfg.target_layer, (study.height, study.width), target_idx)
                logits, heatmap = ex.logits, ex.cam
            else:
                with torch.inference_mode():
                    logits = self.model(x)
                heatmap = None
        type_probs = _probs(logits["type"], cfg.type_labels, cfg.temperature.get("type", 1.0))
        type_label = max(type_probs, key=type_probs.__getitem__)
        stage_label = stage_probs = None
        if cfg.stage_labels and "stage" in logits:
            stage_probs = _probs(logits["stage"], cfg.stage_labels, cfg.temperature.get("stage", 1.0))
            stage_label = max(stage_probs, key=stage_probs.__getitem__)
        heat_cls = None if heatmap is None else (target or type_label)
        return Prediction(
            model_id=cfg.id,
            task=cfg.task,
            type_label=type_label,
            type_probs=type_probs,
            stage_label=stage_label,
            stage_probs=stage_probs,
            stage_note=get_task(cfg.task).stage_note if stage_label is not None else None,
            treatment=pathway(cfg.task, type_label, stage_label),
            image=study.pixels,
            heatmap=heatmap,
            heatmap_class=heat_cls,
            image_sha256=study.sha256,
            modality=study.modality,
            pixel_spacing_mm=study.pixel_spacing_mm,
        )


_PREDICTORS: dict[tuple[str, str], Predictor] = {}
_PREDICTORS_LOCK = threading.Lock()


def get_predictor(model: str | ModelConfig | None = None) -> Predictor:
    """A shared Predictor per model (id and weights pin): loaded once per process and never copied per request.

    ``model``: a model id, a config (for example of a registry outside ``models/``), or None for the default.
    """
    cfg = model if isinstance(model, ModelConfig) else get_model(model)
    key = (cfg.id, cfg.weights_sha256 or str(cfg.weights_path))
    with _PREDICTORS_LOCK:
        pred = _PREDICTORS.get(key)
        if pred is None:
            log.info("Loading model %s (weights sha256 %s)", cfg.id, (cfg.weights_sha256 or "unpinned")[:12])
            pred = Predictor(cfg)
            _PREDICTORS[key] = pred
        return pred
