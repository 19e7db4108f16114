"""Predictor: loads a model once and turns a Study into a Prediction (type, stage, pathway, heatmap)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from .explain.gradcam import gradcam, lesion_probs
from .explain.lesion import LesionMeasure, mask_from_probs, measure, peak_xy
from .imaging.known_spacing import spacing_origin
from .imaging.study import Study
from .models.calibrate import calibrated_softmax
from .models.calibration import Calibration
from .models.config import ModelConfig
from .models.gate import GateStats, auto_refusal, gate_rank, header_refusal, load_gate, ood_refusal
from .models.network import TumorNet, load_model
from .models.precision import bf16_supported, default_precision  # noqa: F401 - bf16_supported: public here too
from .models.preprocess import model_pixels, to_tensor
from .models.registry import AUTO, get_model, task_models  # noqa: F401 - AUTO, task_models: public here too
from .tasks import get_task
from .treatment import Pathway, pathway, pathway_stage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """What one image gets: calibrated type (and stage) probabilities, the pathway, and the heatmap."""

    model_id: str
    task: str
    type_label: str | None  # None when refused
    type_probs: dict[str, float] | None
    stage_label: str | None
    stage_probs: dict[str, float] | None
    stage_note: str | None
    treatment: Pathway | None  # only for an answer (status ok): never for a refused or indeterminate case
    image: np.ndarray  # the displayed grey image, (H, W) in [0, 1]
    heatmap: np.ndarray | None  # Grad-CAM for the shown type class, (H, W) in [0, 1]
    heatmap_class: str | None
    image_sha256: str
    modality: str | None
    pixel_spacing_mm: tuple[float, float] | None
    #: where a spacing the file does not carry came from (the data set manifest); "" when from the file or none
    pixel_spacing_source: str = ""
    #: "ok" (an answer), "refused" (not an image for this model), "indeterminate" (not sure: top two shown)
    status: str = "ok"
    reason: str | None = None
    ood: dict[str, Any] | None = None  # {"score", "threshold", "method"}: higher score = further from training data
    top2: tuple[tuple[str, float], ...] | None = None
    suggested_model: str | None = None  # a bundled model this refused image fits, if any
    frame_index: int = 0
    warnings: tuple[str, ...] = ()
    #: The lesion head's lesion (largest component) for a tumor call: its measurements and its mask (H, W) bool.
    lesion: LesionMeasure | None = None
    lesion_mask: np.ndarray | None = None
    #: For tasks staged by size (breast): the guideline's category from the lesion's longest diameter in mm.
    size_category: dict[str, Any] | None = None
    #: The model was picked by "auto": the best-fitting gate's, or for a refusal, the nearest (none accepts the image).
    by_auto: bool = False

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of ``predict --json`` and the API: no pixels, no identifiers."""
        tp = self.treatment
        return {
            "status": self.status,
            "reason": self.reason,
            "ood": self.ood,
            "model": self.model_id,
            "task": self.task,
            # only an answer names a type; an indeterminate case gives its top two classes instead
            "type": None if self.type_label is None or self.status != "ok"
            else {"label": self.type_label, "probabilities": self.type_probs},
            "top2": None if self.top2 is None else [{"label": k, "probability": v} for k, v in self.top2],
            "stage": None
            if self.stage_label is None
            else {"label": self.stage_label, "probabilities": self.stage_probs, "note": self.stage_note},
            "treatment": None if tp is None else {
                "summary": tp.summary, "options": tp.options, "source": tp.source, "notice": tp.to_dict()["notice"],
            },
            "suggested_model": self.suggested_model,
            "heatmap_class": self.heatmap_class,
            "image_sha256": self.image_sha256,
            "modality": self.modality,
            "pixel_spacing_mm": list(self.pixel_spacing_mm) if self.pixel_spacing_mm else None,
            "pixel_spacing_source": spacing_origin(self.pixel_spacing_mm, self.pixel_spacing_source),
            "frame_index": self.frame_index,
            "warnings": list(self.warnings),
            "heatmap_peak_xy": None if self.heatmap is None else list(peak_xy(self.heatmap)),
            "lesion": None if self.lesion is None else self.lesion.to_json(),
            "size_category": self.size_category,
            "staging_note": get_task(self.task).staging_note if self.status == "ok" else None,
        }


def _probs(logits: torch.Tensor, labels: list[str], cal: Calibration) -> dict[str, float]:
    p = calibrated_softmax(logits[0], cal)
    return {label: float(v) for label, v in zip(labels, p.tolist())}


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
        self.gate: GateStats | None = load_gate(cfg)

    def _refused(self, study: Study, reason: str, ood: dict[str, Any] | None = None) -> Prediction:
        return Prediction(
            model_id=self.cfg.id, task=self.cfg.task, type_label=None, type_probs=None, stage_label=None,
            stage_probs=None, stage_note=None, treatment=None, image=study.pixels, heatmap=None, heatmap_class=None,
            image_sha256=study.sha256, modality=study.modality, pixel_spacing_mm=study.pixel_spacing_mm,
            pixel_spacing_source=study.spacing_source, status="refused", reason=reason, ood=ood,
            frame_index=study.frame_index, warnings=study.warnings,
        )

    def ood(self, pooled: torch.Tensor, logits: torch.Tensor) -> dict[str, Any] | None:
        """The gate's score of one image (None for a model whose gate was never fitted)."""
        if self.gate is None or self.cfg.gate is None:
            return None
        score = float(self.gate.score(pooled.float().numpy(), logits.float().numpy())[0])
        return {"score": round(score, 6), "threshold": round(self.cfg.gate.threshold, 6), "method": self.cfg.gate.method}

    @torch.no_grad()
    def assess(self, study: Study) -> dict[str, Any] | None:
        """The gate's score of ``study`` (:meth:`ood`; refused above its threshold); None where the header rules it
        out or no gate is fitted. One forward, no explanation."""
        if header_refusal(study.modality, study.body_part, self.cfg.task) is not None or self.cfg.gate is None:
            return None
        x = to_tensor(model_pixels(study, self.cfg.input), self.cfg.input)
        with self._lock:
            pooled = self.model.pooled(self.model.forward_features(x))
            return self.ood(pooled, self.model.head_logits(pooled)["type"])

    def run(self, study: Study, explain: bool = True, target: str | None = None, gate: bool = True) -> Prediction:
        """Gate, predict type (and stage), look up the pathway, and explain the shown type class with Grad-CAM.

        The header check refuses before any forward; the OOD score comes from the same forward as the answer.
        ``gate=False`` (evaluation galleries only) reports the score but never refuses or abstains.
        """
        cfg = self.cfg
        header = header_refusal(study.modality, study.body_part, cfg.task) if gate else None
        if header is not None:
            return self._refused(study, header)
        x = to_tensor(model_pixels(study, cfg.input), cfg.input)
        bf16 = self.precision == "bf16"
        if bf16:
            x = x.contiguous(memory_format=torch.channels_last)
        target_idx = None if target is None else cfg.type_labels.index(target)
        with self._lock, torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if explain:
                ex = gradcam(self.model, x, "type", cfg.target_layer, (study.height, study.width), target_idx,
                             calibration=cfg.calibration("type"))
                logits, heatmap, pooled, lesion_map = ex.logits, ex.cam, ex.pooled, ex.lesion
            else:
                with torch.inference_mode():
                    features, lesion_logits = self.model.features_and_lesion(x)
                    pooled = self.model.pooled(features)
                    logits = self.model.head_logits(pooled)
                heatmap = None
                lesion_map = None if lesion_logits is None else lesion_probs(lesion_logits)
        if not all(bool(torch.isfinite(v).all()) for v in logits.values()):
            return self._refused(study, "The model's output for this image is not a number (it overflowed); no "
                                        "answer is given. Check that the file is a valid scan.")
        ood = self.ood(pooled, logits["type"]) if pooled is not None else None
        if gate and ood is not None and ood["score"] > ood["threshold"]:
            spec = get_task(cfg.task)
            return self._refused(study, ood_refusal(spec.title, ood["score"], ood["threshold"]), ood)
        type_probs = _probs(logits["type"], cfg.type_labels, cfg.calibration("type"))
        type_label = max(type_probs, key=type_probs.__getitem__)
        status, reason, top2 = "ok", None, None
        if gate and cfg.gate is not None and type_probs[type_label] < cfg.gate.abstain_below:
            ranked = sorted(type_probs.items(), key=lambda kv: -kv[1])[:2]
            top2 = tuple((k, float(v)) for k, v in ranked)
            names = get_task(cfg.task)
            status = "indeterminate"
            reason = (f"Indeterminate: the model is not sure between {names.label_name(ranked[0][0])} "
                      f"({ranked[0][1]:.0%}) and {names.label_name(ranked[1][0])} ({ranked[1][1]:.0%}); its answers "
                      f"below {cfg.gate.abstain_below:.0%} confidence are not given. No pathway is shown.")
        stage_label = stage_probs = None
        if status == "ok" and cfg.stage_labels and "stage" in logits:
            stage_probs = _probs(logits["stage"], cfg.stage_labels, cfg.calibration("stage"))
            stage_label = max(stage_probs, key=stage_probs.__getitem__)
        heat_cls = None if heatmap is None else (target or type_label)
        lesion = lesion_mask = size_category = None
        spec = get_task(cfg.task)
        if status == "ok" and lesion_map is not None and cfg.lesion is not None and type_label != spec.normal_label:
            lesion_mask = mask_from_probs(lesion_map, (study.height, study.width), cfg.lesion.threshold)
            lesion = measure(lesion_mask, study.pixel_spacing_mm)
            if lesion is None:
                lesion_mask = None
            elif spec.size_rule is not None and lesion.longest_diameter_mm is not None:
                size_category = spec.size_rule.to_json(lesion.longest_diameter_mm)
        return Prediction(
            model_id=cfg.id,
            task=cfg.task,
            type_label=type_label,
            type_probs=type_probs,
            stage_label=stage_label,
            stage_probs=stage_probs,
            stage_note=get_task(cfg.task).stage_note if stage_label is not None else None,
            treatment=pathway(cfg.task, type_label, pathway_stage(cfg.task, type_label, stage_label, size_category))
            if status == "ok" else None,
            image=study.pixels,
            heatmap=heatmap,
            heatmap_class=heat_cls,
            image_sha256=study.sha256,
            modality=study.modality,
            pixel_spacing_mm=study.pixel_spacing_mm,
            pixel_spacing_source=study.spacing_source,
            status=status,
            reason=reason,
            ood=ood,
            top2=top2,
            frame_index=study.frame_index,
            warnings=study.warnings,
            lesion=lesion,
            lesion_mask=lesion_mask,
            size_category=size_category,
        )


_PREDICTORS: dict[tuple[object, ...], Predictor] = {}
_PREDICTORS_LOCK = threading.Lock()


def get_predictor(model: str | ModelConfig | None = None) -> Predictor:
    """A shared Predictor per model (id, weights pin, gate and calibration): loaded once per process, never copied per request.

    ``model``: a model id, a config (for example of a registry outside ``models/``), or None for the default.
    """
    cfg = model if isinstance(model, ModelConfig) else get_model(model)
    # a refitted gate or a new calibration (calibrate --write) is a new predictor
    key = (cfg.id, cfg.weights_sha256 or str(cfg.weights_path), cfg.gate, tuple(sorted(cfg.temperature.items())),
           tuple(sorted(cfg.bias.items())))
    with _PREDICTORS_LOCK:
        pred = _PREDICTORS.get(key)
        if pred is None:
            log.info("Loading model %s (weights sha256 %s)", cfg.id, (cfg.weights_sha256 or "unpinned")[:12])
            pred = Predictor(cfg)
            _PREDICTORS[key] = pred
        return pred


def nearest(study: Study, exclude: str | None = None) -> tuple[ModelConfig, dict[str, Any]] | None:
    """The bundled model (other than ``exclude``) whose gate finds ``study`` nearest its training data (lowest
    score / threshold), with that score; None where every header check rules it out or no gate is fitted."""
    scored = [(cfg, get_predictor(cfg).assess(study)) for cfg in task_models() if cfg.id != exclude]
    return min(((c, o) for c, o in scored if o is not None), key=lambda t: gate_rank(t[1]["score"],
               t[1]["threshold"]), default=None)


def route(study: Study, exclude: str | None = None) -> ModelConfig | None:
    """The bundled model whose gate accepts ``study`` with the most room (lowest score / threshold), or None."""
    best = nearest(study, exclude)
    return best[0] if best is not None and best[1]["score"] <= best[1]["threshold"] else None


def predict_study(study: Study, model: str | ModelConfig | None = None, explain: bool = True) -> Prediction:
    """The one prediction path that the app, the CLI, batch runs and reports share: the chosen model (or
    ``"auto"``: the model whose gate fits the image best), gated; a refused image names the model it fits, if any."""
    if model == AUTO:
        best = nearest(study)
        if best is None:  # no gate looked at it (the headers rule every model out): the default model answers why
            pred = get_predictor(get_model(None))._refused(study, auto_refusal())  # noqa: SLF001 - same module
        elif best[1]["score"] <= best[1]["threshold"]:
            pred = get_predictor(best[0]).run(study, explain=explain)
        else:
            why = auto_refusal(get_task(best[0].task).title, best[1]["score"], best[1]["threshold"])
            pred = get_predictor(best[0])._refused(study, why, best[1])  # noqa: SLF001 - same module
        return replace(pred, by_auto=True)
    pred = get_predictor(model).run(study, explain=explain)
    if pred.status != "refused":
        return pred
    fits = route(study, exclude=pred.model_id)
    if fits is None:
        return pred
    hint = f" This looks like {get_task(fits.task).looks_like or fits.task}: switch to the model {fits.id}."
    return replace(pred, suggested_model=fits.id, reason=(pred.reason or "") + hint)
