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


def _nice_length(mm: float) -> float:
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500):
        if step >= mm:
            return float(step)
    return 1000.0


def add_scale_bar(rgb: np.ndarray, spacing_mm: tuple[float, float] | None) -> np.ndarray:
    """Draw a labelled scale bar (bottom right) from the column pixel spacing; unchanged if spacing is unknown.

    Bar, margin and text are sized from the picture's long side, so they look the same wherever the picture is
    shown at a given size: draw on the picture at the size it is displayed (``explain.display``), not on a 64 px
    scan that the browser then enlarges.
    """
    if not spacing_mm:
        return rgb
    from PIL import Image, ImageDraw, ImageFont

    h, w = rgb.shape[:2]
    side = max(h, w)
    col_mm = float(spacing_mm[1])
    length_mm = _nice_length(w * col_mm / 6.0)
    if length_mm / col_mm > w * 0.5:
        length_mm = max(length_mm / 2, 1.0)
    bar = int(round(length_mm / col_mm))
    img = Image.fromarray(rgb)
    draw = ImageDraw.Draw(img)
    thick = max(2, side // 150)
    margin = max(4, side // 40)
    font_px = max(10, side // 40)
    x1, y1 = w - margin, h - margin
    x0 = x1 - bar
    draw.rectangle([x0 - 1, y1 - thick - 1, x1 + 1, y1 + 1], fill=(0, 0, 0))
    draw.rectangle([x0, y1 - thick, x1, y1], fill=(255, 255, 255))
    font = ImageFont.load_default(size=font_px)
    label = f"{length_mm:g} mm"
    tw = draw.textlength(label, font=font)
    stroke = max(1, font_px // 12)
    draw.text((x1 - tw, y1 - thick - 4 - font_px * 1.15), label, fill=(255, 255, 255), font=font, stroke_width=stroke,
              stroke_fill=(0, 0, 0))
    return np.asarray(img)
