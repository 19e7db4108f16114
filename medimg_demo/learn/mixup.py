"""Mixup (Zhang et al., ICLR 2018): each training batch becomes convex mixes of its images with a shuffled copy of
themselves, and each head's loss the same mix of the losses against both images' labels. Thulasidasan et al.
(NeurIPS 2019) found mixup-trained networks better calibrated and less over-confident on data unlike their training
set. Classification only: a lesion mask, a cover or a counterfactual twin has no meaning for a mixed image, so
``TrainConfig.check_options`` refuses those combinations.

The mix weight is drawn from Beta(alpha, alpha) per batch from the run's own generator (seeded by ``--seed``), so a
run without mixup draws nothing and every recorded recipe still draws the same random numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Mix:
    """One batch's mix: image ``i`` is ``lam * x[i] + (1 - lam) * x[perm[i]]``."""

    lam: float
    perm: torch.Tensor


class Mixup:
    """Draws each batch's mix; ``alpha`` 0 leaves batches (and every random generator) untouched."""

    def __init__(self, alpha: float, seed: int) -> None:
        if alpha < 0:
            raise ValueError(f"mixup alpha {alpha}: give 0 (off) or more.")
        self.alpha = alpha
        self._rng = np.random.default_rng([seed, 20181])  # its own stream: the loader's shuffling stays as it was

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, Mix | None]:
        """(N, C, H, W) batch -> (the mixed batch, its mix), or (x, None) when off or for a single image."""
        if self.alpha <= 0 or len(x) < 2:
            return x, None
        mix = Mix(float(self._rng.beta(self.alpha, self.alpha)), torch.from_numpy(self._rng.permutation(len(x))))
        return mix.lam * x + (1 - mix.lam) * x[mix.perm], mix


def mixed_loss(loss: Callable[[torch.Tensor], torch.Tensor], target: torch.Tensor, mix: Mix | None) -> torch.Tensor:
    """``loss(target)``, or for a mixed batch ``lam * loss(target) + (1 - lam) * loss(target[perm])``."""
    if mix is None:
        return loss(target)
    return mix.lam * loss(target) + (1 - mix.lam) * loss(target[mix.perm])
