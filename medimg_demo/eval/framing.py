"""Does a call rest on the frame? The framing probe: every image's background (outside the body, see
:func:`~medimg_demo.imaging.body.body_mask`) is set to one grey, the body left as it is, and the calls compared.

A model that reads anatomy keeps its call; one that learned a source's framing (lung: the normal images' source shows
grey backgrounds and tight crops) changes it, most tellingly to the task's no-tumor label. Reported with
``evaluate --explain``: ``frame_call_changed`` over correctly called images whose body was found, and
``frame_tumor_to_normal`` over the correctly called tumor images among them."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..imaging.body import body_mask
from ..learn.dataset import ManifestDataset, predict_logits
from ..models.calibrate import calibrated_softmax
from ..models.config import ModelConfig
from .metrics import PlanEntry, case_summary, share

#: The probe's background grey (0-1): above the 0.05-0.3 that ``train --reframe`` draws, about the lightest grey
#: background among lung's normal images.
GREY = 0.35


@dataclass(frozen=True)
class FramingProbe:
    summary: pd.DataFrame  # metric, class, value, ci_low, ci_high
    #: image, frame_call (missing where no body was found), frame_call_changed, frame_tumor_to_normal
    per_case: pd.DataFrame


def lift_background(images: np.ndarray, grey: float = GREY) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) grey images in [0, 1] -> copies whose background is ``grey``, and whether each one's body was found
    (an image whose body cannot be told is left as it is)."""
    out = np.array(images, copy=True)
    found = np.zeros(len(out), dtype=bool)
    for i, img in enumerate(out):
        body = body_mask(img.astype(np.float32))
        if body is not None:
            img[~body] = grey
            found[i] = True
    return out, found


def framing_probe(model: torch.nn.Module, cfg: ModelConfig, ds: ManifestDataset, calls: np.ndarray,
                  normal_label: str | None, seed: int = 0, n_boot: int = 1000) -> FramingProbe:
    """``ds``: the evaluated split (unaugmented); ``calls``: its calibrated type calls (indices)."""
    lifted, found = lift_background(ds.images)
    probe = copy.copy(ds)
    probe.images = lifted
    probs = calibrated_softmax(predict_logits(model, probe)["type"], cfg.calibration("type")).numpy()
    labels = cfg.type_labels
    y = ds.targets["type"].numpy()
    new = probs.argmax(1)
    per_case = pd.DataFrame({"image": ds.frame["image"].to_numpy(), "label": [labels[i] for i in y],
                             "frame_call": [labels[j] if f else None for j, f in zip(new, found)]})
    probed = found & (calls == y)
    per_case["frame_call_changed"] = np.where(probed, new != calls, np.nan)
    if normal_label in labels:
        tumor = probed & (y != labels.index(normal_label))
        per_case["frame_tumor_to_normal"] = np.where(tumor, new == labels.index(normal_label), np.nan)
    return FramingProbe(summary=framing_summary(per_case, seed, n_boot), per_case=per_case)


def framing_summary(per_case: pd.DataFrame, seed: int = 0, n_boot: int = 1000) -> pd.DataFrame:
    """Summary rows of the probe: the share of calls changed, and of tumor calls turned normal (overall, per class)."""
    plan: list[PlanEntry] = [("explain_frame_call_changed", "frame_call_changed", per_case, share),
                             ("explain_frame_tumor_to_normal", "frame_tumor_to_normal", per_case, share)]
    return case_summary(plan, seed, n_boot)
