"""Heatmap + image -> RGB overlay (numpy and a matplotlib colour map only)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=8)
def _lut(cmap: str) -> np.ndarray:
    from matplotlib import colormaps

    try:
        cm = colormaps[cmap]
    except KeyError as exc:
        raise ValueError(f"Unknown colour map {cmap!r}; try 'jet', 'turbo', 'inferno' or 'viridis'.") from exc
    return (cm(np.linspace(0.0, 1.0, 256))[:, :3] * 255.0).astype(np.float32)


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """2-D float image in [0, 1] -> (H, W, 3) uint8."""
    g = np.clip(gray, 0.0, 1.0)
    return np.repeat((g * 255.0 + 0.5).astype(np.uint8)[..., None], 3, axis=2)


def overlay(gray: np.ndarray, heatmap: np.ndarray, opacity: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """Blend a colour-mapped ``heatmap`` (values in [0, 1]) over ``gray`` with the given opacity (0..1)."""
    if gray.shape != heatmap.shape:
        raise ValueError(f"image {gray.shape} and heatmap {heatmap.shape} differ in shape")
    a = float(np.clip(opacity, 0.0, 1.0))
    idx = (np.clip(heatmap, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    color = _lut(cmap)[idx]
    base = np.repeat(np.clip(gray, 0.0, 1.0)[..., None] * 255.0, 3, axis=2)
    return (base * (1.0 - a) + color * a + 0.5).clip(0, 255).astype(np.uint8)
