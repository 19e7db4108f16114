"""An exponential moving average of the weights during fine-tuning (``--ema-halflife``).

With it on, the val scores, the epoch selection, the saved weights and the calibration are the average's, not the
last step's: an average of nearby weights tends to generalise and calibrate better on small data sets (Polyak and
Juditsky 1992; Izmailov et al. 2018). torch's ``AveragedModel`` keeps the average; this module says when it starts,
how fast it forgets, and that counters (BatchNorm's ``num_batches_tracked``) are copied, not averaged."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.optim.swa_utils import AveragedModel


def ema_decay(halflife_epochs: float, steps_per_epoch: int) -> float:
    """The per-step decay whose weight on a step halves after ``halflife_epochs`` epochs of ``steps_per_epoch``."""
    if halflife_epochs <= 0 or steps_per_epoch < 1:
        raise ValueError("an average needs a half-life above 0 epochs and at least one step per epoch")
    return 0.5 ** (1.0 / (halflife_epochs * steps_per_epoch))


def _ema_update(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    """``AveragedModel``'s update for one group of tensors of one dtype: floating tensors move a share ``1 - decay``
    towards the model's; integer ones (step counters) take the model's value."""

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], _n: torch.Tensor) -> None:
        for a, c in zip(averaged, current, strict=True):
            if a.is_floating_point():
                a.lerp_(c, 1.0 - decay)
            else:
                a.copy_(c)

    return update


class WeightAverage:
    """The average of the weights from the first fine-tuning step on (the warm-up, with the backbone frozen, is not
    averaged); off with a half-life of 0, and then :meth:`judged` is the model itself."""

    def __init__(self, halflife_epochs: float, steps_per_epoch: int) -> None:
        self.on = halflife_epochs > 0
        self.decay = ema_decay(halflife_epochs, steps_per_epoch) if self.on else 0.0
        self.average: AveragedModel | None = None

    def start(self, model: torch.nn.Module) -> None:
        """Begin the average at ``model``'s current weights (its first update takes them as they are then)."""
        if self.on:
            self.average = AveragedModel(model, multi_avg_fn=_ema_update(self.decay), use_buffers=True)
            self.average.requires_grad_(False)  # only ever read, and updated without autograd

    def update(self, model: torch.nn.Module) -> None:
        """Fold in ``model``'s weights after an optimiser step."""
        if self.average is not None:
            self.average.update_parameters(model)

    def judged(self, model: torch.nn.Module) -> torch.nn.Module:
        """The weights to score on val and save: the average once it has started, else ``model``."""
        return model if self.average is None else self.average.module
