"""Fit the gate of a model: pooled features and logits of ``train`` and ``val``, each scoring method fitted on
``train``, its refusal threshold and the abstention threshold chosen on ``val`` (never on ``test``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..manifest import read_manifest, split_frame
from ..models.config import ModelConfig
from ..models.gate import METHODS, GateStats, fit_stats
from ..models.network import TumorNet
from .dataset import ManifestDataset

log = logging.getLogger(__name__)

#: Share of val (in-distribution) images a gate may refuse: the threshold is this upper quantile of val scores.
VAL_REFUSAL = 0.02
#: Abstention: the calibrated top probability below which an answer is "indeterminate" is the smallest one at
#: which the accepted val cases reach this accuracy while keeping at least MIN_COVERAGE of them.
ABSTAIN_ACCURACY = 0.98
MIN_COVERAGE = 0.85
#: What to do instead of fitting a gate on val for a model that trained on val.
GATE_INSTEAD = ("a gate needs images the model never trained on to set its thresholds, and test is never used for "
                "that: serve a model that held val out where a gate is needed")


@torch.no_grad()
def features_and_logits(model: TumorNet, batches: list[torch.Tensor] | torch.utils.data.Dataset,
                        desc: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """Pooled features (N, C) and type logits (N, K) of a data set (or a list of input batches), in order."""
    from torch.utils.data import DataLoader

    model.eval()
    loader = batches if isinstance(batches, list) else DataLoader(batches, batch_size=64, shuffle=False)
    feats, logits = [], []
    for item in tqdm(loader, desc=desc, unit="batch", leave=False, mininterval=2.0):
        x = item[0] if isinstance(item, (list, tuple)) else item
        pooled = model.pooled(model.forward_features(x))
        feats.append(pooled.float().numpy())
        logits.append(model.head_logits(pooled)["type"].float().numpy())
    return np.concatenate(feats), np.concatenate(logits)


@dataclass(frozen=True)
class SplitOutputs:
    """Features, type logits and labels of one split."""

    features: np.ndarray
    logits: np.ndarray
    labels: np.ndarray


def split_outputs(model: TumorNet, cfg: ModelConfig, data_dir: Path, split: str) -> SplitOutputs:
    """Decode a split once (same reader and preprocessing as the app) and run the model over it."""
    if split == "val":
        cfg.refuse_in_sample_val("choosing the gate's thresholds", GATE_INSTEAD)
    df = split_frame(read_manifest(data_dir), split)
    ds = ManifestDataset(data_dir, df, {"type": cfg.type_labels}, cfg.input, augment=None, desc=f"decode {split}")
    feats, logits = features_and_logits(model, ds, desc=f"features {split}")
    return SplitOutputs(features=feats, logits=logits, labels=ds.targets["type"].numpy())


def fit_all(train: SplitOutputs, temperature: float, methods: tuple[str, ...] = METHODS) -> dict[str, GateStats]:
    """Every scoring method fitted on the training features."""
    return {m: fit_stats(m, train.features, train.labels, temperature=temperature) for m in methods}


def refusal_threshold(val_scores: np.ndarray, share: float = VAL_REFUSAL) -> float:
    """The score above which an image is refused: the (1 - share) quantile of in-distribution val scores."""
    return float(np.quantile(val_scores, 1.0 - share))


def abstain_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """Smallest calibrated top probability whose accepted val cases reach ABSTAIN_ACCURACY with at least
    MIN_COVERAGE of the cases kept; the largest threshold keeping MIN_COVERAGE if none does; 0 if all are right."""
    conf, right = probs.max(axis=1), probs.argmax(axis=1) == labels
    if right.all():
        return 0.0
    best = 0.0
    for t in np.unique(conf):
        keep = conf >= t
        if keep.mean() < MIN_COVERAGE:
            break
        best = float(t)
        if right[keep].mean() >= ABSTAIN_ACCURACY:
            return float(t)
    return best
