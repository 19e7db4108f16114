"""Evaluate a model on a manifest split: per-case predictions and metrics with 95% bootstrap intervals."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..learn.dataset import ManifestDataset, predict_logits
from ..manifest import read_manifest, split_frame
from ..models.calibrate import calibrated_softmax
from ..models.config import ModelConfig
from ..models.network import load_model
from ..tasks import get_task
from .consistency import consistency_rows, small_p
from .metrics import ece, with_bootstrap

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    metrics: pd.DataFrame  # metric, class, value, ci_low, ci_high
    cases: pd.DataFrame  # one row per image: image, label, pred, p_<class> (calibrated), raw_p_<class> (T = 1)
    explain_cases: pd.DataFrame | None = None  # per-image explanation metrics (with explain=True)


def evaluate(cfg: ModelConfig, data_dir: Path, split: str, n_boot: int = 1000, seed: int = 0,
             explain: bool = False) -> Evaluation:
    """Calibrated predictions of every image of ``split`` and their metrics (type head, then stage head);
    with ``explain``, the heatmap quality metrics too."""
    if split == "val":
        cfg.refuse_in_sample_val("evaluating", "evaluate it on test")
    df = split_frame(read_manifest(data_dir), split)
    model = load_model(cfg)
    heads = {h: labels for h, labels in cfg.heads.items() if h == "type" or h in df.columns}
    ds = ManifestDataset(data_dir, df, heads, cfg.input, augment=None, desc=f"decode {split}")
    logits = predict_logits(model, ds, bf16=False)
    frames = []
    cases = df[["image", "label"] + (["stage"] if "stage" in heads else [])].copy()
    for head, labels in heads.items():
        probs = calibrated_softmax(logits[head], cfg.calibration(head)).numpy()
        y = ds.targets[head].numpy()
        prefix = "" if head == "type" else f"{head}_"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            frames.append(with_bootstrap(y, probs, labels, prefix=prefix, n_boot=n_boot, seed=seed))
        frames.append(consistency_rows(y, probs, prefix=prefix, seed=seed))
        cases[f"{prefix}pred"] = [labels[i] for i in probs.argmax(1)]
        if head == "type":
            type_calls = probs.argmax(1)
        raw = torch.softmax(logits[head], dim=1).numpy()
        for i, name in enumerate(labels):
            cases[f"{prefix}p_{name}"] = probs[:, i]
            cases[f"{prefix}raw_p_{name}"] = raw[:, i]
        if head == "type":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                unc = float(ece(y, raw))
            frames.append(pd.DataFrame([{"metric": "ece_uncalibrated", "class": "", "value": unc,
                                         "ci_low": float("nan"), "ci_high": float("nan")}]))
    explain_cases = None
    if explain:
        from .explanations import evaluate_explanations
        from .framing import framing_probe

        spec = get_task(cfg.task)
        ex = evaluate_explanations(model, cfg, data_dir, df, ds.images, seed=seed, n_boot=n_boot)
        frames.append(ex.summary)
        explain_cases = ex.per_case
        if spec.framed_body:
            framing = framing_probe(model, cfg, ds, type_calls, spec.normal_label, seed=seed, n_boot=n_boot)
            frames.append(framing.summary)
            explain_cases = explain_cases.merge(framing.per_case.drop(columns=["label"]), on="image", how="left")
        if spec.lesion_column in df.columns:
            from .lesions import evaluate_lesions

            les = evaluate_lesions(cfg, data_dir, df, seed=seed, n_boot=n_boot)
            frames.append(les.summary)
            if not les.per_case.empty:
                explain_cases = explain_cases.merge(les.per_case.drop(columns=["label"]), on="image", how="left",
                                                    suffixes=("", "_lesion"))
    metrics = pd.concat(frames, ignore_index=True)
    return Evaluation(metrics=metrics, cases=cases, explain_cases=explain_cases)


def format_table(metrics: pd.DataFrame) -> str:
    """A short human-readable table: value [ci_low, ci_high]."""
    m = metrics.copy()
    m["class"] = m["class"].fillna("")
    m["95% CI"] = [f"[{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else "" for lo, hi in zip(m["ci_low"], m["ci_high"])]
    m["value"] = [small_p(v) or f"{v:.3f}" if k.endswith("consistency_p") else f"{v:.3f}"
                  for k, v in zip(m["metric"], m["value"])]  # "< 0.001", as the cards print it, not 0.000
    return m[["metric", "class", "value", "95% CI"]].to_string(index=False)
