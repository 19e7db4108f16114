"""How a head's logits become the probabilities the app shows (NumPy only; the torch twin and the fitting are in
``calibrate``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Calibration:
    """How one head's logits become probabilities: ``softmax(logits / temperature + bias)``. Temperature scaling
    (Guo et al., 2017) has no bias; bias-corrected temperature scaling (BCTS, Alexandari et al., ICML 2020) adds one
    offset per class, fitted on ``val`` with the temperature (``calibrate --method bcts``)."""

    temperature: float = 1.0
    bias: tuple[float, ...] | None = None

    def scaled(self, logits: Any) -> np.ndarray:
        """Calibrated logits (..., K) in float64."""
        z = np.asarray(logits, dtype=np.float64) / max(self.temperature, 1e-3)
        return z + np.asarray(self.bias, dtype=np.float64) if self.bias is not None else z

    def probs(self, logits: Any) -> np.ndarray:
        """Calibrated probabilities (..., K) of logits (..., K)."""
        z = self.scaled(logits)
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)
