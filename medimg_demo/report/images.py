"""The report's pictures as in-memory PNGs: the image and the Grad-CAM overlay at a printable size, with the scale
bar, the lesion outline where one is given, and the heatmap's colour scale."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ..explain.overlay import add_scale_bar, gray_to_rgb, overlay

#: Smallest long side of an embedded picture: smaller scans (64 px) are enlarged by a whole factor (nearest
#: neighbour), so that print shows their pixels, not blur, and the PDF stays small.
PRINT_SIDE = 320
OUTLINE_RGB = (0, 255, 0)


def png_bytes(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> PNG bytes (nothing touches the disk)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _edge(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a boolean mask (the mask minus its 4-neighbour erosion)."""
    m = np.pad(mask.astype(bool), 1)
    inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return mask.astype(bool) & ~inner


def _enlarge(rgb: np.ndarray, spacing_mm: tuple[float, float] | None) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Enlarge by the whole factor that brings the long side to at least :data:`PRINT_SIDE`; the pixel spacing
    follows so the scale bar stays true."""
    factor = -(-PRINT_SIDE // max(rgb.shape[:2]))  # ceiling division
    if factor <= 1:
        return rgb, spacing_mm
    big = np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)
    return big, None if spacing_mm is None else (spacing_mm[0] / factor, spacing_mm[1] / factor)


def pictures(image: np.ndarray, heatmap: np.ndarray | None, spacing_mm: tuple[float, float] | None,
             outline: np.ndarray | None = None, opacity: float = 0.45) -> tuple[bytes, bytes | None]:
    """(image PNG, overlay PNG or None where there is no heatmap). ``outline``: a lesion mask (H, W) whose edge is
    drawn on both pictures once the prediction carries one."""
    base = gray_to_rgb(image)
    over = overlay(image, heatmap, opacity) if heatmap is not None else None
    if outline is not None:
        if outline.shape != image.shape:
            raise ValueError(f"lesion outline {outline.shape} and image {image.shape} differ in shape")
        edge = _edge(outline)
        for rgb in (base, over):
            if rgb is not None:
                rgb[edge] = OUTLINE_RGB
    big, spacing = _enlarge(base, spacing_mm)
    first = png_bytes(add_scale_bar(big, spacing))
    if over is None:
        return first, None
    big_over, _ = _enlarge(over, spacing_mm)
    return first, png_bytes(add_scale_bar(big_over, spacing))


def colour_bar(width: int = 256, height: int = 12) -> bytes:
    """The heatmap's colour scale (low to high Grad-CAM), the same colour map as the overlay at full opacity."""
    ramp = np.tile(np.linspace(0.0, 1.0, width), (height, 1))
    return png_bytes(overlay(np.zeros_like(ramp), ramp, opacity=1.0))
