"""A calibration fold held out of training: the temperature is fitted on images the served model never saw.

Val is used to select the epoch, so a temperature fitted on val alone follows a small split's luck (lung: 85 images,
2 errors, T = 0.31, over-confident on test). Cross-validated temperatures (``cv_calibrate``) fit on fold models that
are not the served model. Here one fold of ``train`` (the same stratified, twin-grouped folds as ``cv_calibrate``,
split with ``--calibration-seed``, so models of several seeds can hold out the same images) is left out of training;
the served model predicts it, and the temperature is fitted (NLL) on those logits plus its val logits. The price: the
model trains on (K-1)/K of train. With ``--train-on-val`` the fold is one of train + val, and the temperature is
fitted on it alone. The record names the held-out images (a fingerprint), so a later run distilling from this model,
or copying its temperature, can check which images it never saw (``start``, ``served_calibration``).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..errors import OptionError
from ..models.calibrate import fit_temperature
from ..models.config import InputConfig
from .config import HELD_OUT
from .dataset import ManifestDataset, predict_logits
from .folds import fold_assignment, near_duplicate_groups

log = logging.getLogger(__name__)

#: What a ``--train-on-val`` run draws its calibration fold from (config.json's ``calibration.pool``).
POOL = "train + val"


def split_calibration_fold(folder: Path, train_df: pd.DataFrame, folds: int, fold: int,
                           seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(images to train on, the calibration fold): fold ``fold`` of ``folds`` of the whole ``train`` split (or of the
    train + val pool, ``--train-on-val``), stratified by label with near-duplicate twins kept together, so no image's
    twin is trained on while it calibrates."""
    if not 2 <= folds or not 0 <= fold < folds:
        raise OptionError(f"--calibration-fold {fold} of --calibration-folds {folds}: give 2 or more folds and a fold "
                          f"from 0 to {folds - 1}.")
    train_df = train_df.reset_index(drop=True)
    groups = near_duplicate_groups(folder, train_df["image"].tolist())
    assignment = fold_assignment(train_df["label"].to_numpy(), groups, folds, seed)
    held = train_df[assignment == fold].reset_index(drop=True)
    rest = train_df[assignment != fold].reset_index(drop=True)
    log.info("Calibration fold %d of %d: %d images held out (%s), %d trained on", fold, folds, len(held),
             held["label"].value_counts().to_dict(), len(rest))
    return rest, held


def held_out_fingerprint(held: pd.DataFrame) -> str:
    """sha256 of the held-out fold's sorted image paths: which images a model never trained on, so a teacher of a
    later run can be checked to have held out the very same ones (not only the same fold numbers)."""
    return hashlib.sha256("\n".join(sorted(held["image"].astype(str))).encode()).hexdigest()


def holdout_temperature(model: torch.nn.Module, folder: Path, held: pd.DataFrame, heads: dict[str, list[str]],
                        input_cfg: InputConfig, val_logits: dict[str, torch.Tensor] | None,
                        val_targets: dict[str, torch.Tensor] | None, val_only: dict[str, float] | None, folds: int,
                        fold: int, pool: str = "train") -> tuple[dict[str, float], dict[str, Any]]:
    """The temperature per head fitted on the calibration fold's and val's logits (the fold's alone when
    ``val_logits`` is None: val was trained on), and the record config.json keeps (the card states it); ``val_only``:
    the temperature val alone gives, for the record; ``pool``: what the fold was drawn from."""
    ds = ManifestDataset(folder, held, heads, input_cfg, augment=None, desc="decode calibration fold")
    held_logits = predict_logits(model, ds, bf16=False)
    if val_logits is None or val_targets is None:
        val_logits = {h: held_logits[h][:0] for h in heads}
        val_targets = {h: ds.targets[h][:0] for h in heads}
    temperature = {h: fit_temperature(torch.cat([held_logits[h], val_logits[h]]), torch.cat([ds.targets[h], val_targets[h]]))
                   for h in heads}

    def accuracy(z: torch.Tensor, y: torch.Tensor) -> float:
        return round(float((z.argmax(1) == y).float().mean()), 4)

    record = {"method": HELD_OUT, "folds": folds, "fold": fold, "held_out": len(ds), "cases": len(ds) + len(val_targets["type"]),
              "held_out_sha256": held_out_fingerprint(held),
              "held_out_type_accuracy": accuracy(held_logits["type"], ds.targets["type"]),
              **({"val_type_accuracy": accuracy(val_logits["type"], val_targets["type"]),
                  "val_only_temperature": val_only} if len(val_targets["type"]) else {"pool": pool})}
    log.info("Temperature %s on %d held-out images%s; held-out accuracy %.3f", temperature, len(ds),
             f" + {len(val_targets['type'])} val (val only: {val_only})" if len(val_targets["type"]) else f" of {pool}",
             record["held_out_type_accuracy"])
    return temperature, record
