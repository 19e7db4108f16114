"""Display windows: VOI linear/sigmoid windowing (PS3.3 C.11.2.1.2) and the usual CT presets."""

from __future__ import annotations

import numpy as np

#: CT presets in Hounsfield units: (centre, width).
CT_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (40.0, 400.0),
    "brain": (40.0, 80.0),
    "bone": (400.0, 1800.0),
}


def apply_window(
    values: np.ndarray, center: float, width: float, function: str = "LINEAR", invert: bool = False
) -> np.ndarray:
    """Values in modality units -> [0, 1] through a VOI window; ``invert`` for MONOCHROME1."""
    v = np.asarray(values, dtype=np.float64)
    width = float(width)
    center = float(center)
    if function == "SIGMOID":
        out = 1.0 / (1.0 + np.exp(-4.0 * (v - center) / max(width, 1e-6)))
    elif function == "LINEAR_EXACT":
        out = (v - (center - width / 2.0)) / max(width, 1e-6)
    elif width <= 1.0:
        out = (v > center - 0.5).astype(np.float64)
    else:  # LINEAR (default)
        out = (v - (center - 0.5)) / (width - 1.0) + 0.5
    out = np.clip(out, 0.0, 1.0)
    return (1.0 - out if invert else out).astype(np.float32)
