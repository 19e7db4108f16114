"""Is the model looking at the lesion, and does it need it? Measured through the app's own prediction path on
the native images of a manifest split.

- Pointing game (Zhang et al., 2016): the heatmap's peak lies within 15 px of the annotated lesion (and, strictly,
  inside it); on correctly classified tumor cases, as the literature reports it.
- Lesion head: Dice with the mask (breast); IoU of the predicted lesion's box with the annotated box (brain); error
  of the longest diameter in mm against the box's longer side (brain, at the manifest's pixel spacing).
- Lesion erasure: the annotated lesion in-filled from its border (``explain.lesion.erase``) vs. a same-shaped
  region elsewhere in the anatomy; the share of correct tumor calls lost, resp. kept. The call lost is also given for
  a second in-fill no served model was trained on (``explain.lesion.erase_smooth``): a model trained with the border in-fill
  could otherwise pass the test by recognising it.
- Ultrasound (a task with ``posterior_depth``): the lesion erased together with the column beneath it, where its
  posterior acoustic features lie (``explain.lesion.with_posterior``), vs. that same shape erased elsewhere. A
  diagnostic beside the issue's test, not a replacement: it tells a call that needs nothing of the lesion from one
  that reads its acoustic signature below the mask.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from tqdm import tqdm

from ..explain.lesion import (anatomy, annotation_mask, box_iou, erase, erase_smooth, longest_diameter, mask_box,
                              mask_from_probs, peak_xy, region_elsewhere, with_posterior)
from ..imaging.decode import read_file
from ..imaging.study import Study
from ..models.config import ModelConfig
from ..predict import Predictor
from ..tasks import get_task
from .metrics import PlanEntry, case_summary, share

log = logging.getLogger(__name__)

TOLERANCE_PX = 15


@dataclass(frozen=True)
class LesionResult:
    per_case: pd.DataFrame
    summary: pd.DataFrame  # metric, class, value, ci_low, ci_high


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def _with_pixels(study: Study, pixels: np.ndarray) -> Study:
    from dataclasses import replace

    return replace(study, pixels=pixels.astype(np.float32), values=None)


def evaluate_lesions(cfg: ModelConfig, folder: Path, frame: pd.DataFrame, seed: int = 0,
                     predictor: Predictor | None = None, n_boot: int = 1000) -> LesionResult:
    """Lesion metrics on ``frame`` (a manifest split of a task with lesion annotations)."""
    spec = get_task(cfg.task)
    pred = predictor or Predictor(cfg)
    rng = np.random.default_rng(seed)
    rng_posterior = np.random.default_rng(seed + 1)  # its own draws: the other figures stay as they were
    rows = []
    for _, row in tqdm(frame.iterrows(), total=len(frame), desc="lesion metrics", unit="img", leave=False, mininterval=2.0):
        if row["label"] == spec.normal_label:
            continue
        study = read_file(folder / row["image"])
        gt = annotation_mask(row, folder, (study.height, study.width))
        if gt is None:
            continue
        out = pred.run(study, explain=True, gate=False)
        rec: dict[str, object] = {"image": row["image"], "label": row["label"], "pred": out.type_label,
                                  "correct": out.type_label == row["label"]}
        if out.heatmap is not None:
            x, y = peak_xy(out.heatmap)
            dist = ndimage.distance_transform_edt(~gt)
            rec.update(peak_x=x, peak_y=y, pointing_strict=bool(gt[y, x]), pointing_15px=bool(dist[y, x] <= TOLERANCE_PX))
        if cfg.lesion is not None:
            probs = _lesion_map(pred, study)
            predicted = mask_from_probs(probs, gt.shape, cfg.lesion.threshold)
            rec["dice"] = dice(predicted, gt)
            rec["box_iou"] = box_iou(mask_box(predicted), mask_box(gt))
            spacing = _spacing(row, study)
            if spacing is not None and spec.lesion_column == "bbox_xywh_norm":
                b = mask_box(gt)
                assert b is not None
                truth = max((b[2] - b[0]) * spacing[1], (b[3] - b[1]) * spacing[0])
                rec["diameter_error_mm"] = abs(longest_diameter(predicted, spacing) - truth) if predicted.any() else truth
        if rec["correct"]:
            erased = pred.run(_with_pixels(study, erase(study.pixels, gt)), explain=False, gate=False)
            rec["erase_lesion_call_lost"] = erased.type_label != out.type_label
            smooth = pred.run(_with_pixels(study, erase_smooth(study.pixels, gt)), explain=False, gate=False)
            rec["erase_smooth_call_lost"] = smooth.type_label != out.type_label
            elsewhere = region_elsewhere(gt, rng, inside=anatomy(study.pixels))
            if elsewhere is not None:
                kept = pred.run(_with_pixels(study, erase(study.pixels, elsewhere)), explain=False, gate=False)
                rec["erase_elsewhere_call_kept"] = kept.type_label == out.type_label
            if spec.posterior_depth > 0:
                rec.update(_posterior_erasure(pred, study, gt, out.type_label, spec.posterior_depth, rng_posterior))
        rows.append(rec)
    per_case = pd.DataFrame(rows)
    return LesionResult(per_case=per_case, summary=summarise(per_case, seed, n_boot))


def _posterior_erasure(pred: Predictor, study: Study, gt: np.ndarray, call: str, depth: float,
                       rng: np.random.Generator) -> dict[str, bool]:
    """Ultrasound: the call lost with the lesion and its posterior column erased; kept with that shape erased
    elsewhere in the image."""
    region = with_posterior(gt, depth)
    erased = pred.run(_with_pixels(study, erase(study.pixels, region)), explain=False, gate=False)
    rec = {"erase_posterior_call_lost": erased.type_label != call}
    elsewhere = region_elsewhere(region, rng, inside=anatomy(study.pixels))
    if elsewhere is not None:
        kept = pred.run(_with_pixels(study, erase(study.pixels, elsewhere)), explain=False, gate=False)
        rec["erase_posterior_elsewhere_call_kept"] = kept.type_label == call
    return rec


def _lesion_map(pred: Predictor, study: Study) -> np.ndarray:
    import torch

    from ..explain.gradcam import lesion_probs
    from ..models.preprocess import model_pixels, to_tensor

    x = to_tensor(model_pixels(study, pred.cfg.input), pred.cfg.input)
    with torch.inference_mode():
        _, logits = pred.model.features_and_lesion(x)
    assert logits is not None
    return lesion_probs(logits)


def _spacing(row: pd.Series, study: Study) -> tuple[float, float] | None:
    value = row.get("pixel_spacing_mm")
    try:
        mm = float(value)
    except (TypeError, ValueError):
        return study.pixel_spacing_mm
    return (mm, mm) if np.isfinite(mm) and mm > 0 else study.pixel_spacing_mm


def summarise(per_case: pd.DataFrame, seed: int = 0, n_boot: int = 1000) -> pd.DataFrame:
    """Summary rows (metric, class, value, 95% interval: Wilson for the shares of cases, the percentile bootstrap
    for the medians): overall and per class."""
    if per_case.empty:
        return pd.DataFrame(columns=["metric", "class", "value", "ci_low", "ci_high"])
    correct = per_case[per_case["correct"].astype(bool)]
    plan: list[PlanEntry] = [
        ("explain_pointing_15px", "pointing_15px", correct, share),
        ("explain_pointing_strict", "pointing_strict", correct, share),
        ("explain_lesion_dice_median", "dice", per_case, np.median),
        ("explain_lesion_box_iou_median", "box_iou", per_case, np.median),
        ("explain_lesion_diameter_error_mm_median", "diameter_error_mm", per_case, np.median),
        ("explain_erase_lesion_call_lost", "erase_lesion_call_lost", correct, share),
        ("explain_erase_smooth_call_lost", "erase_smooth_call_lost", correct, share),
        ("explain_erase_elsewhere_call_kept", "erase_elsewhere_call_kept", correct, share),
        ("explain_erase_posterior_call_lost", "erase_posterior_call_lost", correct, share),
        ("explain_erase_posterior_elsewhere_call_kept", "erase_posterior_elsewhere_call_kept", correct, share),
    ]
    if "box_iou" in per_case:
        per_case = per_case.assign(box_iou_ge_half=per_case["box_iou"] >= 0.5)
        plan.insert(4, ("explain_lesion_box_iou_ge_0.5", "box_iou_ge_half", per_case, share))
    return case_summary(plan, seed, n_boot)
