"""Cross-validated temperature scaling: more calibration cases than a small ``val`` split holds.

A temperature fitted on a small val split (lung: 85 images, 2 errors) follows that split's luck: the lung model
was sharpened to T = 0.31 and came out over-confident on test. Here the model's own recipe (its config.json
``training`` record) is re-run on K folds of ``train`` (folds stratified by label and grouped by near-duplicate
thumbnails, so no image's twin is predicted by a model that saw it); each fold model predicts the images it did not
see. A model trained from another (``--init-from``) is re-built per fold from the first recipe of its chain, every
step on the fold's images only (:func:`recipe_chain`). The temperature is then fitted (NLL, as before) on those out-of-fold logits together with the served model's
``val`` logits. Fold models are trained on (K-1)/K of ``train``, so if anything they err a little more than the
served model: the temperature leans to the cautious side. How far is reported: each fold model's val accuracy at
its selected epoch beside the served model's, with a warning when they differ by more than ``FOLD_GAP``; the record
keeps both. ``test`` is not touched.

Measured on lung: with 5 folds the fold models reached val accuracy 0.88-0.94 against the served model's 0.976, with
early stopping or running every epoch (``full_schedule``), while the same recipe on all of train with other seeds
reached 0.95-0.98: the fifth of train a fold leaves out is what costs the accuracy. Their out-of-fold logits would
make the served model under-confident; the lung temperature stays fitted on val.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from ..errors import OptionError
from ..manifest import read_manifest, resolve_data_dir, split_frame
from ..models.calibrate import fit_temperature
from ..models.config import ModelConfig
from ..models.config_file import update_config
from ..models.network import load_model
from .config import FROM_HELD_OUT, TrainConfig
from .dataset import ManifestDataset, predict_logits
from .drift_calibration import DriftCalibration
from .folds import fold_assignment, near_duplicate_groups

log = logging.getLogger(__name__)

#: Val accuracy by which the fold models may trail the served model before the result is flagged as too cautious.
FOLD_GAP = 0.03
#: Recipes re-run per fold at most (a model started from a model started from ImageNet weights is 2).
MAX_CHAIN = 3


@dataclass(frozen=True)
class CvCalibration:
    temperature: dict[str, float]  # per head, fitted on out-of-fold train logits + val logits
    val_only: dict[str, float]  # per head, fitted on val alone (the old way), for the record
    folds: int
    n_cases: int
    oof_accuracy: float  # type head, out-of-fold train predictions
    val_accuracy: float  # type head, the served model on val
    fold_val_accuracy: tuple[float, ...] = ()  # type head, each fold model on val at its selected epoch
    full_schedule: bool = False  # fold models ran every epoch of the recipe (no early stop), selected on val
    chain: tuple[str, ...] = ()  # the models whose recipes each fold re-ran, first to last (when more than one)
    #: one row per calibration case: image, label, fold (-1: val, the served model), raw logits per head and class
    predictions: pd.DataFrame | None = field(default=None, compare=False, repr=False)

    @property
    def folds_trail(self) -> bool:
        """The fold models are clearly weaker than the served model: the temperature is biased high."""
        return bool(self.fold_val_accuracy) and self.val_accuracy - min(self.fold_val_accuracy) > FOLD_GAP

    def record(self) -> dict[str, Any]:
        """What config.json keeps beside the temperature (the card states it)."""
        return {"method": "temperature scaling (NLL) on out-of-fold train logits of the model's own recipe + val",
                "folds": self.folds, "cases": self.n_cases, "oof_type_accuracy": round(self.oof_accuracy, 4),
                "val_type_accuracy": round(self.val_accuracy, 4), "val_only_temperature": self.val_only,
                "fold_val_type_accuracy": [round(a, 4) for a in self.fold_val_accuracy],
                **({"full_schedule": True} if self.full_schedule else {}),
                **({"recipes_per_fold": list(self.chain)} if len(self.chain) > 1 else {})}


def recipe(cfg: ModelConfig) -> TrainConfig:
    """The TrainConfig that trained ``cfg`` (its config.json record), ready to re-run on a fold.

    A recipe that distils (``distill_from``) another trained model is refused: that teacher has seen every train
    image, so a fold model taught by it would not be out-of-fold. A recipe that starts from one (``init_from``) is
    re-run from the start by :func:`recipe_chain`."""
    record = dict(cfg.raw.get("training") or {})
    if not record:
        raise OptionError(f"{cfg.id} has no training record in its config.json: nothing to cross-validate.")
    if record.get("distill_from"):
        raise OptionError(f"{cfg.id} was trained with --distill-from {record['distill_from']}, a model that saw all "
                          "of train: its fold models would not be out-of-fold. Calibrate a model trained without a "
                          "teacher, or keep the val temperature.")
    if record.get("calibration_folds"):
        raise OptionError(f"{cfg.id} was calibrated on a fold held out of its training (--calibration-folds): that is "
                          "already out-of-sample; cross-validating its recipe would mix two hold-outs.")
    record.setdefault("select_bf16", True)  # records written before the option were selected under bf16 val scores
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in record.items() if k in known and k not in ("data", "heads")})


def recipe_chain(cfg: ModelConfig, lookup: Callable[[str], ModelConfig] | None = None) -> list[TrainConfig]:
    """The recipes that built ``cfg``, first to last. A model trained from another (``--init-from``) is re-built on
    each fold from ImageNet weights up, every step on the fold's images only (a start model trained on all of train
    would have seen the fold's held-out images). ``lookup`` finds a start model by id (default: the registry)."""
    if lookup is None:
        from ..models.registry import get_model as lookup
    chain = [recipe(cfg)]
    while chain[0].init_from:
        if len(chain) >= MAX_CHAIN:
            raise OptionError(f"{cfg.id} is built on {len(chain)} trained models in a row; cross-validation re-runs at "
                              f"most {MAX_CHAIN}.")
        start = lookup(chain[0].init_from)
        if start.task != cfg.task:  # every step is re-run on this model's data set
            raise OptionError(f"{cfg.id} starts from {start.id}, a {start.task} model: cross-validation re-runs every "
                              f"step on {cfg.task}'s folds, so it cannot rebuild that one.")
        chain.insert(0, recipe(start))
    return chain


def cross_val_temperature(cfg: ModelConfig, folds: int = 3, data: str | None = None,
                          work_dir: Path | None = None, full_schedule: bool = False) -> CvCalibration:
    """Train the model's recipe on ``folds`` folds of train, collect out-of-fold logits, fit the temperature on
    them and the served model's val logits.

    ``full_schedule``: the fold models run every epoch of the recipe (early stopping off; the epoch is still
    selected on val). A served model whose selected epoch lies in the schedule's low-LR tail was never early-stopped;
    fold models that stop early miss that tail and trail it."""
    from .train import train  # heavy; imported here so this module's helpers load fast

    cfg.refuse_in_sample_val("cross-validated calibration", FROM_HELD_OUT)
    chain = recipe_chain(cfg)
    if full_schedule:
        chain = [replace(r, patience=r.epochs + r.warmup_epochs + 1) for r in chain]
    base = chain[-1]
    folder = resolve_data_dir(data, cfg.task)
    df = read_manifest(folder)
    train_df = split_frame(df, "train").reset_index(drop=True)
    groups = near_duplicate_groups(folder, train_df["image"].tolist())
    fold = fold_assignment(train_df["label"].to_numpy(), groups, folds, base.seed)
    log.info("%d train images in %d near-duplicate groups, %d folds of %s", len(train_df), len(set(groups)), folds,
             np.bincount(fold).tolist())
    heads = cfg.heads
    val_ds = ManifestDataset(folder, split_frame(df, "val"), heads, cfg.input, augment=None, desc="val")
    frames: list[pd.DataFrame] = []
    oof: dict[str, list[torch.Tensor]] = {h: [] for h in heads}
    oof_targets: dict[str, list[torch.Tensor]] = {h: [] for h in heads}
    fold_val: list[float] = []
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        for k in range(folds):
            held = train_df[fold == k].reset_index(drop=True)
            log.info("Fold %d/%d: training on %d images, predicting %d", k + 1, folds, len(train_df) - len(held), len(held))
            start = ""  # each step of the chain starts from the fold's previous step (found in the fold's --out)
            for step in chain:
                run = replace(step, model_id=f"{step.model_id or cfg.id}.fold{k}", out_dir=tmp, default=False,
                              data=str(folder), init_from=start)
                fold_cfg = train(run, exclude=frozenset(held["image"]))
                start = run.model_id
            if fold_cfg.heads != heads:
                raise OptionError(f"Fold {k + 1} learned heads {fold_cfg.heads}, the served model has {heads}.")
            fold_model = load_model(fold_cfg)
            # the fold model's val accuracy in fp32, as the served model's below (selection may have scored bf16)
            fold_val_logits = predict_logits(fold_model, val_ds, bf16=False)["type"]
            fold_val.append(float((fold_val_logits.argmax(1) == val_ds.targets["type"]).float().mean()))
            ds = ManifestDataset(folder, held, heads, fold_cfg.input, augment=None, desc=f"fold {k + 1} out-of-fold")
            logits = predict_logits(fold_model, ds, bf16=False)
            for h in heads:
                oof[h].append(logits[h])
                oof_targets[h].append(ds.targets[h])
            frames.append(_prediction_frame(held, k, logits, ds.targets, heads))
    val_logits = predict_logits(load_model(cfg), val_ds, bf16=False)
    frames.append(_prediction_frame(val_ds.frame, -1, val_logits, val_ds.targets, heads))
    temperature, val_only = {}, {}
    for h in heads:
        z = torch.cat(oof[h] + [val_logits[h]])
        y = torch.cat(oof_targets[h] + [val_ds.targets[h]])
        temperature[h] = fit_temperature(z, y)
        val_only[h] = fit_temperature(val_logits[h], val_ds.targets[h])
    oof_acc = float((torch.cat(oof["type"]).argmax(1) == torch.cat(oof_targets["type"])).float().mean())
    val_acc = float((val_logits["type"].argmax(1) == val_ds.targets["type"]).float().mean())
    result = CvCalibration(temperature, val_only, folds, len(train_df) + len(val_ds), oof_acc, val_acc, tuple(fold_val),
                           full_schedule, tuple(r.model_id for r in chain), pd.concat(frames, ignore_index=True))
    if result.folds_trail:
        log.warning("The fold models reached val accuracy %s, the served model %.3f: their out-of-fold logits make the "
                    "temperature too cautious. Use more folds, or keep the val temperature.",
                    [round(a, 3) for a in fold_val], val_acc)
    log.info("Temperature %s (val only: %s); out-of-fold accuracy %.3f, val %.3f", temperature, val_only, oof_acc, val_acc)
    return result


def _prediction_frame(frame: pd.DataFrame, fold: int, logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                      heads: dict[str, list[str]]) -> pd.DataFrame:
    """Image, fold, and per head its target label and raw logits, in the dataset's order (``predict_logits``')."""
    out = frame[["image"]].reset_index(drop=True).assign(fold=fold)
    for h, labels in heads.items():
        out = out.assign(**{f"target_{h}": [labels[int(i)] for i in targets[h]]},
                         **{f"logit_{h}_{c}": logits[h][:, i].float().numpy() for i, c in enumerate(labels)})
    return out


def write_calibration(cfg: ModelConfig, result: CvCalibration | DriftCalibration) -> Path:
    """Pin the temperature and its record in the model's config.json (weights unchanged), atomically (the app may
    be reading it); a BCTS bias is dropped. The gate's abstention threshold was chosen on the old probabilities: refit it
    (``gate``), then re-evaluate (the evaluation cache is keyed by the calibration too)."""
    if cfg.folder is None:
        raise OptionError(f"{cfg.id} was not loaded from a model folder: nothing to write.")

    def change(record: dict[str, Any]) -> None:
        record["temperature"] = result.temperature
        record.pop("bias", None)  # a BCTS bias belongs to the temperature it was fitted with: it goes with it
        record["calibration"] = result.record()

    return update_config(cfg.folder, change, cfg.weights_sha256)


def summary_frame(result: CvCalibration) -> pd.DataFrame:
    """One row per head: the cross-validated and the val-only temperature."""
    return pd.DataFrame([{"head": h, "temperature": t, "val_only": result.val_only[h]} for h, t in result.temperature.items()])
