"""Bias-corrected temperature scaling (BCTS; Alexandari, Kundaje and Shrikumar, ICML 2020) fitted on ``val``, and
the evidence whether it earns its place over plain temperature scaling.

Why a bias: a model trained with counterfactual covers (lesion covered -> no-tumor label, ``--erase-lesion``) sees
the no-tumor class far more often in training than the data hold, and learns that prior. A temperature cannot move a
decision; one offset per class can (it is the label-shift correction of the paper). The offsets are four more
numbers fitted on a small split, so they must show their worth on cases they were not fitted on: repeated stratified
K-fold cross-validation *within* ``val`` compares the held-out NLL, ECE and accuracy of both methods, and BCTS is
recommended only when its held-out NLL is clearly lower and its temperature is not on a bound (a sign of a nearly
separable split, where larger offsets always look better). ``test`` is never read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.model_selection import StratifiedKFold

from ..errors import ModelError, OptionError
from ..manifest import read_manifest, resolve_data_dir, split_frame
from ..models.calibrate import T_MAX, T_MIN, calibrated_logits, ece, fit_calibration
from ..models.calibration import Calibration
from ..models.config import ModelConfig
from ..models.config_file import update_config
from ..models.network import load_model
from .config import FROM_HELD_OUT, refuse_replacing_held_out
from .dataset import ManifestDataset, predict_logits

log = logging.getLogger(__name__)

#: Relative reduction of the cross-validated NLL that BCTS must reach to be recommended (and written without --force).
MIN_GAIN = 0.05
METHODS = ("temperature", "bcts")


@dataclass(frozen=True)
class BctsResult:
    fitted: Calibration  # BCTS fitted on all of val
    temperature_only: Calibration  # temperature scaling fitted on all of val
    comparison: pd.DataFrame  # method, cv_nll, cv_ece, cv_accuracy (held-out folds of val)
    n_cases: int
    folds: int
    repeats: int

    def cv(self, method: str, column: str) -> float:
        return float(self.comparison.set_index("method").loc[method, column])

    @property
    def gain(self) -> float:
        """Relative reduction of the held-out NLL by BCTS (positive: BCTS is better)."""
        base = self.cv("temperature", "cv_nll")
        return (base - self.cv("bcts", "cv_nll")) / base if base > 0 else 0.0

    @property
    def on_bound(self) -> bool:
        """The fitted temperature sits on its bound: val is (nearly) separable, so the held-out NLL can be driven
        towards zero by ever larger offsets; that is overfitting a small split, not calibration."""
        return not T_MIN < self.fitted.temperature < T_MAX

    @property
    def recommended(self) -> bool:
        return self.gain >= MIN_GAIN and not self.on_bound

    def record(self) -> dict[str, Any]:
        """What config.json keeps beside the temperature and the bias (the card states it)."""
        return {"method": "bcts", "split": "val", "cases": self.n_cases, "folds": self.folds, "repeats": self.repeats,
                "cv": {m: {k: round(self.cv(m, k), 4) for k in ("cv_nll", "cv_ece", "cv_accuracy")} for m in METHODS},
                "temperature_only": self.temperature_only.temperature}


def _held_out(logits: torch.Tensor, targets: torch.Tensor, cal: Calibration) -> tuple[np.ndarray, np.ndarray]:
    z = calibrated_logits(logits, cal)
    nll = F.cross_entropy(z, targets, reduction="none").numpy()
    return nll, torch.softmax(z, dim=1).numpy()


def cross_validate(logits: torch.Tensor, targets: torch.Tensor, folds: int = 5, repeats: int = 5,
                   seed: int = 0) -> tuple[pd.DataFrame, int]:
    """Held-out NLL (mean per case), ECE and accuracy of temperature scaling and of BCTS, each fitted on K-1 folds of
    ``logits`` and scored on the last, over ``repeats`` shufflings. Returns the table and the folds used (fewer
    when a class has fewer cases than ``folds``)."""
    y = targets.long()
    smallest = int(np.bincount(y.numpy(), minlength=logits.shape[1]).min()) if len(y) else 0
    k = min(folds, smallest)
    if k < 2:
        raise ModelError(f"Cross-validation needs at least 2 cases of every class; the smallest class has {smallest} in val. Keep temperature scaling.")
    rows = []
    for method in METHODS:
        nll, ece_v, acc = [], [], []
        for r in range(repeats):
            probs = np.zeros((len(y), logits.shape[1]))
            losses = np.zeros(len(y))
            splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed + r)
            for fit_idx, held in splitter.split(np.zeros(len(y)), y.numpy()):
                cal = fit_calibration(logits[fit_idx], y[fit_idx], bias=method == "bcts")
                losses[held], probs[held] = _held_out(logits[held], y[held], cal)
            nll.append(losses.mean())
            ece_v.append(ece(y.numpy(), probs))
            acc.append(float((probs.argmax(1) == y.numpy()).mean()))
        rows.append({"method": method, "cv_nll": float(np.mean(nll)), "cv_ece": float(np.mean(ece_v)),
                     "cv_accuracy": float(np.mean(acc))})
    return pd.DataFrame(rows), k


def fit_bcts(cfg: ModelConfig, data: str | None = None, folds: int = 5, repeats: int = 5) -> BctsResult:
    """BCTS and temperature scaling of the type head, fitted on ``val`` and compared by cross-validation on it."""
    cfg.refuse_in_sample_val("fitting BCTS", FROM_HELD_OUT)
    folder = resolve_data_dir(data, cfg.task)
    val_df = split_frame(read_manifest(folder), "val")
    ds = ManifestDataset(folder, val_df, {"type": cfg.type_labels}, cfg.input, augment=None, desc="decode val")
    logits = predict_logits(load_model(cfg), ds, bf16=False)["type"]
    y = ds.targets["type"].long()
    table, k = cross_validate(logits, y, folds=folds, repeats=repeats)
    result = BctsResult(fitted=fit_calibration(logits, y, bias=True), temperature_only=fit_calibration(logits, y, bias=False),
                        comparison=table, n_cases=len(y), folds=k, repeats=repeats)
    log.info("%s: BCTS %s; held-out NLL %.4f vs %.4f with temperature only (gain %.1f%%)", cfg.id, result.fitted,
             result.cv("bcts", "cv_nll"), result.cv("temperature", "cv_nll"), 100 * result.gain)
    return result


def write_bcts(cfg: ModelConfig, result: BctsResult) -> Path:
    """Pin the type head's BCTS temperature and bias and their record in config.json (weights unchanged), atomically.
    The gate's abstention threshold was chosen on the old probabilities: refit it (``gate``), then re-evaluate (the
    evaluation cache is keyed by the calibration too, so the old figures are not reused)."""
    if cfg.folder is None:
        raise OptionError(f"{cfg.id} was not loaded from a model folder: nothing to write.")

    def change(record: dict[str, Any]) -> None:
        refuse_replacing_held_out(cfg.id, record.get("training") or {}, "BCTS")
        record.setdefault("temperature", {})["type"] = result.fitted.temperature
        record.setdefault("bias", {})["type"] = list(result.fitted.bias or ())
        record["calibration"] = result.record()

    return update_config(cfg.folder, change, cfg.weights_sha256)
