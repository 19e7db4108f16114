"""Calibration fitted on the validation split: temperature scaling (Guo et al., 2017) and bias-corrected temperature
scaling (BCTS: one temperature plus one offset per class; Alexandari et al., ICML 2020), and their application to
torch logits (the NumPy twin is :meth:`calibration.Calibration.probs`)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .calibration import Calibration

#: The range a fitted temperature is kept in; a fit on the bound means the split is (nearly) separable.
T_MIN, T_MAX = 0.05, 20.0


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, max_iter: int = 200) -> float:
    """The temperature T > 0 minimising the NLL of ``softmax(logits / T)``; 1.0 if there is nothing to fit."""
    if logits.numel() == 0 or len(targets) < 2:
        return 1.0
    return fit_calibration(logits, targets, bias=False, max_iter=max_iter).temperature


def fit_calibration(logits: torch.Tensor, targets: torch.Tensor, bias: bool = True, max_iter: int = 200) -> Calibration:
    """The :class:`Calibration` minimising the NLL of ``softmax(logits / T + b)`` (with ``bias``; else b = 0). The
    temperature is kept within [T_MIN, T_MAX]; the offsets are centred (adding a constant to every class changes
    nothing) and rounded to 4 decimals, as config.json stores them."""
    logits = logits.detach().float().clone()  # may come from inference_mode
    targets = targets.detach().long()
    log_t = torch.zeros(1, requires_grad=True)
    offsets = torch.zeros(logits.shape[1], requires_grad=True)
    params = [log_t, offsets] if bias else [log_t]
    opt = torch.optim.LBFGS(params, lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp().clamp(T_MIN, T_MAX) + offsets, targets)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    t = round(min(max(float(log_t.detach().exp()), T_MIN), T_MAX), 4)
    if not bias:
        return Calibration(temperature=t)
    b = offsets.detach() - offsets.detach().mean()
    return Calibration(temperature=t, bias=tuple(round(float(v), 4) for v in b))


def calibrated_logits(logits: torch.Tensor, cal: Calibration) -> torch.Tensor:
    """``logits / T + b`` in float32 (the torch twin of :meth:`Calibration.scaled`)."""
    z = logits.float() / max(cal.temperature, 1e-3)
    if cal.bias is not None:
        z = z + torch.tensor(cal.bias, dtype=z.dtype)
    return z


def calibrated_softmax(logits: torch.Tensor, cal: Calibration) -> torch.Tensor:
    """``softmax(logits / T + b)`` over the last dimension, in float32."""
    return torch.softmax(calibrated_logits(logits, cal), dim=-1)


def ece(y: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error of the top-1 confidence, equal-width bins (right-closed)."""
    return top1_ece(probs.max(1), probs.argmax(1) == y, n_bins)


def top1_ece(conf: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """:func:`ece` from the top-class confidences and whether each top class was right."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges, conf, side="left") - 1  # bin i holds edges[i] < conf <= edges[i + 1]
    total = 0.0
    for b in np.unique(bins[bins >= 0]):
        m = bins == b
        total += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(total)
