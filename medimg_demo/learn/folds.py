"""Folds of a train split for calibration: stratified by label, near-duplicate twins kept in one fold.

Used by the cross-validated temperature (``cv_calibrate``, split with the model's ``--seed``) and the calibration fold
held out of training (``holdout``, split with ``--calibration-seed``), so both see the same folds for the same seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from ..imaging.decode import read_file
from ..models.preprocess import resize_gray

#: Near duplicates as the data README defines them: mean absolute difference of 32x32 thumbnails under 3 grey levels.
THUMB = 32
TWIN_GREY_LEVELS = 3.0


def near_duplicate_groups(folder: Path, images: list[str]) -> np.ndarray:
    """A group id per image: images whose 32x32 thumbnails differ by under 3 grey levels share a group (transitively)."""
    thumbs = np.stack([resize_gray(read_file(folder / p).pixels, (THUMB, THUMB)).ravel() * 255.0 for p in images])
    parent = np.arange(len(images))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for i in range(len(images)):
        close = np.nonzero(np.abs(thumbs[i + 1:] - thumbs[i]).mean(1) < TWIN_GREY_LEVELS)[0] + i + 1
        for j in close:
            parent[find(int(j))] = find(i)
    return np.array([find(i) for i in range(len(images))])


def fold_assignment(labels: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold index per image, stratified by label, twins kept together."""
    out = np.empty(len(labels), dtype=int)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, held) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        out[held] = k
    return out
