"""The patient's body in a slice: everything but the flat background connected to the image's border.

Used to tell anatomy from framing (how tightly a source crops, the grey of its background), which differs between
the sources of one data set and so is a shortcut a model can learn (``train --reframe``)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: A background brighter than this (0-1 grey) is not segmented: in a lung window soft tissue is as bright.
WHITE_BACKGROUND = 0.35


def body_mask(pixels: np.ndarray, tolerance: float = 0.06, min_share: float = 0.15) -> np.ndarray | None:
    """``pixels``: 2-D grey in [0, 1] -> boolean mask of the body (largest non-background region, holes filled,
    grown by 2 px), or None where it cannot be told: a white background, or a body under ``min_share`` of the image.

    Background: pixels within ``tolerance`` of the border's median grey (after a 5 px median filter) that are
    connected to the border.
    """
    a = np.asarray(pixels, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"body_mask needs a 2-D grey image, got shape {a.shape}.")
    smooth = ndimage.median_filter(a, size=5)
    border = np.concatenate([smooth[0], smooth[-1], smooth[:, 0], smooth[:, -1]])
    level = float(np.median(border))
    if level > WHITE_BACKGROUND:
        return None
    labels, _ = ndimage.label(np.abs(smooth - level) <= tolerance)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    background = np.isin(labels, edge[edge > 0])
    foreground = ndimage.binary_opening(~background, iterations=3)
    labels, n = ndimage.label(foreground)
    if n == 0:
        return None
    sizes = ndimage.sum(foreground, labels, range(1, n + 1))
    body = ndimage.binary_fill_holes(labels == int(np.argmax(sizes)) + 1)
    if body.mean() < min_share:
        return None
    return np.asarray(ndimage.binary_dilation(body, iterations=2), dtype=bool)
