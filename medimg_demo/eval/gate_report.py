"""``python -m medimg_demo gate``: fit a model's gate on ``train``, choose its method and thresholds on ``val``,
measure it on ``test`` and the OOD sets, and write the statistics (pinned), the config block, the comparison CSVs
and the model card's gate section."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ModelError
from ..learn.gate import GATE_INSTEAD, SplitOutputs, abstain_threshold, fit_all, refusal_threshold, split_outputs
from ..models.calibration import Calibration
from ..models.config import ModelConfig
from ..models.config_file import CONFIG_FILE, folder_locked, install_pinned, temporary_beside, write_text_atomic
from ..models.gate import METHODS, calibration_state, save_stats
from ..models.network import load_model
from .card import rewrite_gate_section
from .ood import comparison, ood_sets, score_files

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateReport:
    """What the gate command measured and wrote."""

    method: str
    threshold: float
    abstain_below: float
    ood: pd.DataFrame  # split, method, set, n, auroc, fpr_at_95_tpr, refused
    selective: pd.DataFrame  # split, plain_accuracy, accepted, coverage, selective_accuracy, refused, indeterminate


def _selective(split: str, out: SplitOutputs, scores: np.ndarray, threshold: float, abstain: float,
               cal: Calibration) -> dict[str, float | str]:
    probs = cal.probs(out.logits)
    right = probs.argmax(1) == out.labels
    refused = scores > threshold
    indeterminate = ~refused & (probs.max(1) < abstain)
    answered = ~refused & ~indeterminate
    return {"split": split, "n": len(right), "plain_accuracy": float(right.mean()),
            "refused": float(refused.mean()), "indeterminate": float(indeterminate.mean()),
            "coverage": float(answered.mean()),
            "selective_accuracy": float(right[answered].mean()) if answered.any() else float("nan")}


def fit_gate(cfg: ModelConfig, data_dir: Path, data_root: Path, method: str = "auto", seed: int = 0) -> GateReport:
    """Fit, choose, measure and write the gate of ``cfg`` (see the module docstring)."""
    if cfg.folder is None:
        raise ModelError(f"Model {cfg.id} has no folder to write its gate into.")
    if method != "auto" and method not in METHODS:
        raise ModelError(f"Unknown gate method {method!r}; use auto or one of {', '.join(METHODS)}.")
    cfg.refuse_in_sample_val("choosing the gate's thresholds", GATE_INSTEAD)  # before train is decoded
    model = load_model(cfg)
    for p in model.parameters():
        p.requires_grad_(False)
    temperature = cfg.gate_temperature
    outs = {split: split_outputs(model, cfg, data_dir, split) for split in ("train", "val", "test")}
    stats = {m: s.as_stored() for m, s in fit_all(outs["train"], temperature).items()}
    scores = {split: {m: s.score(outs[split].features, outs[split].logits) for m, s in stats.items()}
              for split in ("val", "test")}
    thresholds = {m: refusal_threshold(v) for m, v in scores["val"].items()}
    frames = []
    for split in ("val", "test"):
        sets = ood_sets(cfg.task, data_root, split, seed=seed)
        scored = {name: score_files(model, cfg, stats, files) for name, files in sets.items()}
        frames.append(comparison(scores[split], scored, thresholds, split))
    ood = pd.concat(frames, ignore_index=True)
    if method == "auto":  # the best separation of all OOD sets on val; ties go to the earlier (feature) method
        val_all = ood[(ood["split"] == "val") & (ood["set"] == "all OOD")].set_index("method")["auroc"]
        method = max(METHODS, key=lambda m: (round(float(val_all[m]), 4), -METHODS.index(m)))
    val_probs = cfg.calibration("type").probs(outs["val"].logits)
    abstain = abstain_threshold(val_probs, outs["val"].labels)
    selective = pd.DataFrame([_selective(s, outs[s], scores[s][method], thresholds[method], abstain, cfg.calibration("type"))
                              for s in ("val", "test")])
    report = GateReport(method=method, threshold=thresholds[method], abstain_below=abstain, ood=ood, selective=selective)
    _write(cfg, report, stats[method])
    return report


def _unchanged_calibration(cfg: ModelConfig) -> Callable[[dict[str, Any]], None]:
    """A check of config.json under the folder's lock: the calibration is still the one the fit read."""
    under = calibration_state(cfg.raw)

    def check(record: dict[str, Any]) -> None:
        if calibration_state(record) != under:
            raise ModelError(f"The calibration of {cfg.id} changed while its gate was being fitted (calibrate "
                             f"--write ran meanwhile); nothing was written. Run `python -m medimg_demo gate --model "
                             f"{cfg.id}` again.")
    return check


def _write(cfg: ModelConfig, report: GateReport, stats) -> None:  # noqa: ANN001 - GateStats
    assert cfg.folder is not None
    tmp = temporary_beside(cfg.folder / "gate.safetensors")
    entry = {"file": "gate.safetensors", "sha256": save_stats(stats, tmp), "method": report.method,
             "threshold": round(report.threshold, 6), "abstain_below": round(report.abstain_below, 6), "k": stats.k,
             "score_temperature": stats.temperature, "fitted_under": calibration_state(cfg.raw)}
    try:
        install_pinned(cfg.folder, tmp, "gate", entry, check=_unchanged_calibration(cfg), weights_sha256=cfg.weights_sha256)
    finally:
        tmp.unlink(missing_ok=True)
    with folder_locked(cfg.folder):  # the figures and the card section go with the pin, unless another fit's replaced it
        pinned = json.loads((cfg.folder / CONFIG_FILE).read_text()).get("gate") or {}
        if pinned.get("sha256") != entry["sha256"] or pinned.get("threshold") != entry["threshold"]:
            log.warning("Another gate fit of %s pinned its gate meanwhile; its figures are kept", cfg.id)
            return
        metrics = cfg.folder / "metrics"
        metrics.mkdir(exist_ok=True)
        for name, frame in (("ood.csv", report.ood), ("selective.csv", report.selective)):
            write_text_atomic(metrics / name, frame.to_csv(index=False, float_format="%.6g"))
        rewrite_gate_section(cfg.folder)
    log.info("Wrote the %s gate of %s (threshold %.4g, abstain below %.3f)", report.method, cfg.id,
             report.threshold, report.abstain_below)
