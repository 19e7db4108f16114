"""The calibration a training run writes for the model it serves.

- By default the temperature is fitted on ``val`` (which also selected the epoch).
- With a calibration fold held out of training (``--calibration-folds``): on that fold plus ``val``; with
  ``--train-on-val`` (val trained on) on that fold alone.
- With ``--train-on-val --temperature-from MODEL``: copied from a sibling of the same recipe that held a fold of the
  same pool out, since this run has no image left it never trained on.
- With ``--lesion-only``: the start model's, since its classifier is unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..errors import OptionError
from ..models.calibrate import fit_temperature
from ..models.config import InputConfig, ModelConfig
from .config import HELD_OUT, SIBLING, TrainConfig, portable_data_path, train_command
from .dataset import ManifestDataset, predict_logits
from .holdout import POOL, held_out_fingerprint, holdout_temperature, split_calibration_fold
from .start import start_model

log = logging.getLogger(__name__)

#: Training options a sibling may differ in from the run that copies its temperature (ids, folders, the fold itself).
_SIBLING_FREE = frozenset({"model_id", "out_dir", "calibration_folds", "calibration_fold", "calibration_seed",
                           "temperature_from", "default", "threads", "patience", "min_epochs", "heads"})


#: A sibling checked by :func:`check_sibling`: its model config and its calibration record.
Sibling = tuple[ModelConfig, dict[str, Any]]


def served_calibration(cfg: TrainConfig, served: torch.nn.Module, folder: Path, held: pd.DataFrame | None,
                       heads: dict[str, list[str]], input_cfg: InputConfig, val_ds: ManifestDataset,
                       sibling: Sibling | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """(temperature per head, what config.json keeps beside it: ``calibration`` and, kept from a start model, ``bias``).
    ``sibling``: with ``--temperature-from``, the model :func:`check_sibling` accepted before training."""
    if cfg.train_on_val:
        if held is not None:
            temperature, record = holdout_temperature(served, folder, held, heads, input_cfg, None, None, None,
                                                      cfg.calibration_folds, cfg.calibration_fold, pool=POOL)
            return temperature, {"calibration": record}
        if sibling is None:
            raise OptionError("--train-on-val with nothing held out needs --temperature-from MODEL.")
        return sibling_temperature(*sibling)
    val_logits = predict_logits(served, val_ds, bf16=False)
    temperature = {h: fit_temperature(val_logits[h], val_ds.targets[h]) for h in heads}
    kept: dict[str, Any] = {}
    if held is not None:  # fitted on a train fold the model never saw, plus val
        temperature, kept["calibration"] = holdout_temperature(
            served, folder, held, heads, input_cfg, val_logits, val_ds.targets, temperature, cfg.calibration_folds,
            cfg.calibration_fold)
    if cfg.lesion_only:  # the classifier is the start model's, so is its calibration (the refit above is for the log)
        start = start_model(cfg.init_from, cfg.out_dir)
        log.info("Calibration kept from %s: temperature %s, bias %s (a refit of the temperature on val gives %s)",
                 cfg.init_from, start.temperature, start.bias or "none", temperature)
        temperature = dict(start.temperature)
        kept = {**({"bias": {h: list(b) for h, b in start.bias.items()}} if start.bias else {}),
                **({"calibration": start.raw["calibration"]} if start.raw.get("calibration") else {})}
    return temperature, kept


def sibling_temperature(source: ModelConfig, cal: dict[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """The temperature of ``--temperature-from`` and the record config.json keeps: the sibling's id, its weights'
    sha256, the command that trains it and what it held out."""
    record = {"method": SIBLING, "model": source.id, "weights_sha256": source.weights_sha256,
              "train_command": train_command(source.raw["training"]),
              **{k: cal[k] for k in ("folds", "fold", "held_out", "held_out_sha256", "held_out_type_accuracy")
                 if k in cal}}
    log.info("Temperature %s copied from %s (fitted on %s held-out images of the pool)", source.temperature, source.id,
             cal.get("held_out"))
    return dict(source.temperature), {"calibration": record}


def check_sibling(cfg: TrainConfig, heads: dict[str, list[str]], folder: Path, pool: pd.DataFrame) -> Sibling:
    """The model ``--temperature-from`` names and its calibration record, if it is a run of this very recipe that held
    a calibration fold out of this run's ``pool`` (train + val of the data set in ``folder``: the same images, checked
    by their fingerprint) and fitted its temperature there. Checked before training starts; anything else is refused,
    naming what differs."""
    source = start_model(cfg.temperature_from, cfg.out_dir, option="--temperature-from")
    cal = source.raw.get("calibration") or {}
    training = source.raw.get("training") or {}
    if cal.get("method") != HELD_OUT or not training.get("train_on_val") or "held_out_sha256" not in cal:
        raise OptionError(f"--temperature-from {source.id}: its temperature was not fitted on a fold it held out of a "
                          "train + val pool; train a sibling with --train-on-val --calibration-folds N first.")
    if source.heads != heads:
        raise OptionError(f"--temperature-from {source.id}: its heads {source.heads} differ from this run's {heads}.")
    defaults = asdict(TrainConfig(task=cfg.task))
    own = {**asdict(cfg), "data": portable_data_path(folder)}
    differ = {k: (training.get(k, defaults.get(k)), v) for k, v in own.items()
              if k not in _SIBLING_FREE and training.get(k, defaults.get(k)) != v}
    if differ:
        raise OptionError(f"--temperature-from {source.id}: its recipe differs from this run's in "
                          + "; ".join(f"{k} ({theirs!r} vs {mine!r})" for k, (theirs, mine) in sorted(differ.items()))
                          + f". A temperature carries over only between runs of one recipe: give this run its options "
                          f"(its command: {train_command(training)}).")
    _, held = split_calibration_fold(folder, pool, cal["folds"], cal["fold"], training.get("calibration_seed", 0))
    if held_out_fingerprint(held) != cal["held_out_sha256"]:
        raise OptionError(f"--temperature-from {source.id}: the images it held out are not a fold of this run's "
                          "train + val pool (the data set changed since it was trained?); retrain it on this data first.")
    return source, cal
