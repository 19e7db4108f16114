"""Sharpness-aware minimisation (Foret et al., ICLR 2021; ``--sam RHO``): each step takes its gradient at the weights
moved ``rho`` along the normalised gradient (the nearby worst case), then applies it at the weights it started from.
It seeks flat minima, reported to generalise better and be less over-confident away from the training set.

Two forward and backward passes per step, so a run takes about twice as long. The second pass leaves BatchNorm's
running statistics alone (it sees the same batch at perturbed weights). ``rho`` 0 is off and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch


class SharpnessAware:
    """Wraps a step: ``backward(loss_fn, opt)`` leaves in the gradients of ``opt``'s parameters the one SAM applies."""

    def __init__(self, rho: float, model: torch.nn.Module) -> None:
        if rho < 0:
            raise ValueError(f"SAM radius {rho}: give 0 (off) or more.")
        self.rho, self.model = rho, model

    def backward(self, loss_fn: Callable[[], torch.Tensor], opt: torch.optim.Optimizer) -> torch.Tensor:
        """Back-propagate ``loss_fn()`` into gradients the caller has zeroed (at the perturbed weights too, when on);
        return the loss at the current weights (the one to report). ``opt.step()`` is the caller's."""
        loss = loss_fn()
        loss.backward()
        if self.rho <= 0:
            return loss
        live = [p for g in opt.param_groups for p in g["params"] if p.requires_grad and p.grad is not None]
        if not live:
            return loss
        with torch.no_grad():
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in live]))  # type: ignore[arg-type]
            scale = self.rho / (float(norm) + 1e-12)
            moves = [p.grad * scale for p in live]  # type: ignore[operator]
            for p, e in zip(live, moves):
                p.add_(e)
                p.grad = None
        with _running_stats_frozen(self.model):
            loss_fn().backward()
        with torch.no_grad():
            for p, e in zip(live, moves):
                p.sub_(e)
        return loss


@contextmanager
def _running_stats_frozen(model: torch.nn.Module) -> Iterator[None]:
    """BatchNorm layers in train mode normalise by the batch as usual but do not update their running statistics."""
    saved = []
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm) and mod.training:
            saved.append((mod, mod.momentum))
            mod.momentum = 0.0
    try:
        yield
    finally:
        for mod, momentum in saved:
            mod.momentum = momentum
