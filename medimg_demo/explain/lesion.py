"""The lesion as pixels: the annotated mask of a manifest row, the predicted mask's measurements (bounding box, area,
longest diameter in pixels and millimetres), its outline, and the border in-fill that erases a region.

NumPy and SciPy only: the app, batch runs, evaluation and training share these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError


@dataclass(frozen=True)
class LesionMeasure:
    """One lesion in the native pixels of the displayed frame."""

    bbox_xywh: tuple[int, int, int, int]
    area_px: int
    longest_diameter_px: float
    longest_diameter_mm: float | None  # None: the pixel spacing is not known ("not measurable")
    area_mm2: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "bbox_xywh": list(self.bbox_xywh),
            "area_px": self.area_px,
            "longest_diameter_px": round(self.longest_diameter_px, 1),
            "longest_diameter_mm": None if self.longest_diameter_mm is None else round(self.longest_diameter_mm, 1),
            "area_mm2": None if self.area_mm2 is None else round(self.area_mm2, 1),
            "mask_png": None,  # a file name where `predict --lesion-masks DIR` wrote the mask
        }

    def describe(self) -> str:
        """One line for people: "Longest diameter 23.4 mm (24 px), area 310 px" or "... not measurable in mm"."""
        px = f"{self.longest_diameter_px:.0f} px"
        if self.longest_diameter_mm is None:
            return f"Longest diameter {px}, area {self.area_px} px (not measurable in mm: pixel spacing unknown)"
        return f"Longest diameter {self.longest_diameter_mm:.1f} mm ({px}), area {self.area_mm2:.0f} mm²"


def annotation_mask(row: Any, folder: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """Ground-truth lesion of a manifest row as a boolean (H, W) mask: from its mask PNG or its normalised centre
    box (``bbox_xywh_norm``); None where the row has no lesion."""
    h, w = shape
    mask_rel = str(row.get("mask", "") or "")
    if mask_rel:
        m = Image.open(folder / mask_rel).convert("L").resize((w, h), Image.Resampling.NEAREST)
        arr = np.asarray(m) > 127
        return arr if arr.any() else None
    box = str(row.get("bbox_xywh_norm", "") or "")
    if box:
        cx, cy, bw, bh = (float(v) for v in box.split())
        arr = np.zeros((h, w), dtype=bool)
        x0, x1 = int(max(0, (cx - bw / 2) * w)), int(min(w, np.ceil((cx + bw / 2) * w)))
        y0, y1 = int(max(0, (cy - bh / 2) * h)), int(min(h, np.ceil((cy + bh / 2) * h)))
        arr[y0:y1, x0:x1] = True
        return arr if arr.any() else None
    return None


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(row 0, row 1, column 0, column 1), end-exclusive, of a mask's non-zero pixels; None for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a boolean mask (empty in, empty out; between equal sizes, the one met
    first in raster order). Labelled within the mask's box: the same components, in the same order, on fewer pixels."""
    box = _box(mask)
    if box is None:
        return mask.astype(bool)
    y0, y1, x0, x1 = box
    sub = mask[y0:y1, x0:x1]
    labels, n = ndimage.label(sub, structure=np.ones((3, 3), dtype=bool))
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    out = np.zeros(mask.shape, dtype=bool)
    out[y0:y1, x0:x1] = labels == (int(np.argmax(sizes)) + 1)
    return out


def _hull_corners(mask: np.ndarray) -> np.ndarray:
    """Corners (row, col) of the pixels that can lie on the convex hull of a mask: the first and last pixel of each
    row (every other pixel lies between them), reduced to the hull's vertices. (0, 2) for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if not len(rows):
        return np.zeros((0, 2))
    sub = mask[rows]
    first = sub.argmax(axis=1)
    last = sub.shape[1] - 1 - sub[:, ::-1].argmax(axis=1)
    corners = np.concatenate([np.stack([rows + dy, cols + dx], 1)
                              for cols, dx in ((first, 0), (last, 1)) for dy in (0, 1)]).astype(np.float64)
    try:
        return corners[ConvexHull(corners).vertices]
    except (QhullError, ValueError):  # a line of pixels: the hull is flat; every corner is a candidate
        return corners


def _max_distance(pts: np.ndarray) -> float:
    if not len(pts):
        return 0.0
    return float(np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)).max())


def longest_diameter(mask: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0)) -> float:
    """Maximum Feret diameter of a boolean mask: the largest distance between two pixel corners of its convex hull,
    with rows and columns scaled by ``spacing`` = (row mm, column mm)."""
    return _max_distance(_hull_corners(mask) * np.asarray(spacing, dtype=np.float64))


def measure(mask: np.ndarray, spacing_mm: tuple[float, float] | None) -> LesionMeasure | None:
    """Measurements of a boolean lesion mask (native pixels); None for an empty mask."""
    box = _box(mask)
    if box is None:
        return None
    y0, y1, x0, x1 = box
    sub = mask[y0:y1, x0:x1]
    bbox = (x0, y0, x1 - x0, y1 - y0)
    area = int(np.count_nonzero(sub))
    # the hull of the box's pixels, moved back to the image's coordinates; scaling rows and columns then maps the
    # hull's vertices onto the scaled hull's
    hull = _hull_corners(sub) + np.array([y0, x0], dtype=np.float64)
    d_px = _max_distance(hull)
    d_mm = area_mm2 = None
    if spacing_mm is not None and all(np.isfinite(s) and s > 0 for s in spacing_mm):
        d_mm = _max_distance(hull * np.asarray(spacing_mm, dtype=np.float64))
        area_mm2 = area * float(spacing_mm[0]) * float(spacing_mm[1])
    return LesionMeasure(bbox_xywh=bbox, area_px=area, longest_diameter_px=d_px, longest_diameter_mm=d_mm,
                         area_mm2=area_mm2)


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The boolean border of a mask, ``width`` pixels thick, inside the mask."""
    inner = ndimage.binary_erosion(mask, structure=np.ones((3, 3), dtype=bool), iterations=max(1, width))
    return mask & ~inner


def erase(image: np.ndarray, region: np.ndarray, blur: float = 2.0) -> np.ndarray:
    """The image with ``region`` in-filled from its border: each pixel takes the value of the nearest pixel outside
    the region, then the in-fill is smoothed (Gaussian, ``blur`` pixels) so no streaks remain."""
    if not region.any():
        return image.copy()
    _, (iy, ix) = ndimage.distance_transform_edt(region, return_indices=True)
    filled = image[iy, ix].astype(np.float32)
    smooth = ndimage.gaussian_filter(filled, blur) if blur > 0 else filled
    out = image.astype(np.float32).copy()
    out[region] = smooth[region]
    return out


def anatomy(image: np.ndarray) -> np.ndarray:
    """Where the body is: pixels above a tenth of the 99th percentile, holes filled (brain: the head, not the air)."""
    fg = ndimage.gaussian_filter(image.astype(np.float32), 2) > 0.1 * float(np.percentile(image, 99))
    return ndimage.binary_fill_holes(fg)


def erase_smooth(image: np.ndarray, region: np.ndarray, seed: int = 0) -> np.ndarray:
    """A second in-fill, which no served model was trained on (a check that a model needs the lesion rather than
    recognising an in-fill; ``train --erase-infill patch_smooth`` or ``varied`` trains on it and holds out the border): the mask-aware Gaussian average of the surroundings (normalised convolution, sigma a third of the
    region's larger side) plus smooth noise at half the standard deviation of a 5-px ring around the region."""
    if not region.any():
        return image.copy()
    img = image.astype(np.float32)
    ys, xs = np.nonzero(region)
    sigma = max(2.0, (max(int(np.ptp(ys)), int(np.ptp(xs))) + 1) / 3)
    keep = (~region).astype(np.float32)
    fill = ndimage.gaussian_filter(img * keep, sigma) / np.maximum(ndimage.gaussian_filter(keep, sigma), 1e-6)
    ring = ndimage.binary_dilation(region, iterations=5) & ~region
    std = float(img[ring].std()) if ring.any() else 0.0
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(img.shape).astype(np.float32), 1.0)
    noise *= 0.5 * std / max(float(noise.std()), 1e-6)
    out = img.copy()
    out[region] = np.clip(fill[region] + noise[region], float(img.min()), float(img.max()))
    return out


def with_posterior(region: np.ndarray, depth: float) -> np.ndarray:
    """``region`` together with the column beneath it (ultrasound: where its posterior acoustic enhancement or
    shadowing lies), ``depth`` times the whole region's height deep (for a mask of several lesions, the mask's) below each image column's lowest region pixel,
    clipped at the image's lower edge. The beam is taken to run down the image rows (a linear probe)."""
    out = region.copy()
    ys, xs = np.nonzero(region)
    if not len(ys) or depth <= 0:
        return out
    reach = int(round(depth * (ys.max() - ys.min() + 1)))
    bottom = np.full(region.shape[1], -1)
    np.maximum.at(bottom, xs, ys)
    rows = np.arange(region.shape[0])[:, None]
    below = (rows > bottom[None, :]) & (rows <= bottom[None, :] + reach) & (bottom[None, :] >= 0)
    return out | below


def region_elsewhere(region: np.ndarray, rng: np.random.Generator, tries: int = 50,
                     inside: np.ndarray | None = None) -> np.ndarray | None:
    """The same-shaped region moved to a random place that does not touch ``region`` (dilated by 4 px) and, where
    ``inside`` is given, lies mostly within it (for example the head); None when no place fits."""
    ys, xs = np.nonzero(region)
    if not len(ys):
        return None
    h, w = region.shape
    y0, x0, bh, bw = ys.min(), xs.min(), ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    if bh >= h or bw >= w:
        return None
    keep_out = ndimage.binary_dilation(region, iterations=4)
    patch = region[y0:y0 + bh, x0:x0 + bw]
    for _ in range(tries):
        ny, nx = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        moved = np.zeros_like(region)
        moved[ny:ny + bh, nx:nx + bw] = patch
        if (moved & keep_out).any():
            continue
        if inside is not None and (moved & inside).sum() < 0.8 * moved.sum():
            continue
        return moved
    return None


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of a boolean mask's pixels (x1, y1 exclusive); None when it is empty."""
    ys, xs = np.nonzero(mask)
    return None if not len(ys) else (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def box_iou(a: tuple[int, int, int, int] | None, b: tuple[int, int, int, int] | None) -> float:
    """IoU of two boxes (x0, y0, x1, y1); 0 when either is missing."""
    if a is None or b is None:
        return 0.0
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def mask_from_probs(probs: np.ndarray, shape: tuple[int, int], threshold: float = 0.5) -> np.ndarray:
    """The lesion head's probability map (h, w) -> the largest lesion component as a boolean mask of ``shape`` (H, W),
    upsampled bilinearly before the cut so the outline is not blocky."""
    h, w = shape
    up = Image.fromarray(np.ascontiguousarray(probs, dtype=np.float32), mode="F").resize((w, h), Image.Resampling.BILINEAR)
    return largest_component(np.asarray(up) > threshold)


def peak_xy(heatmap: np.ndarray) -> tuple[int, int]:
    """(x, y) of the heatmap's maximum, in the heatmap's pixels (the native pixels of the displayed frame)."""
    y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return int(x), int(y)
