"""Counterfactual training images against shortcuts (right for the right reasons): with the annotated lesion
covered the image is labelled as the task's no-tumor class; with a same-sized region elsewhere covered, the label
stays. The model so learns that the lesion, not the context or the source's look, carries the call.

Training covers a region with a feathered patch copied from another part of the same image (``infill="patch"``);
with ``infill="mixed"``, half of the time with the border in-fill that evaluation uses (``explain.lesion.erase``, at
a random blur); with ``infill="patch_smooth"``, half of the time with the smooth in-fill
(``explain.lesion.erase_smooth``), so that the test's border in-fill stays out of training altogether. Patch covers alone taught the
models to recognise the cover: on val, brain v2 lost its call for 61% of patch-covered lesions but 41% of border
in-filled ones. Evaluation therefore also erases with the smooth in-fill, which no run trains on except with
"patch_smooth" or "varied" (then the border in-fill is the held-out one), to tell a model that needs the lesion from one that
recognises an in-fill.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import OptionError
from ..explain.lesion import erase, erase_smooth, region_elsewhere

#: How training covers a region: a patch of the same image; half of the time the border in-fill ("mixed"); half of
#: the time the smooth in-fill ("patch_smooth"); or a third of the time each the patch, the smooth in-fill and the
#: strip beside the region at the same depth ("varied"). The last two keep the test's border in-fill out of training.
INFILLS = ("patch", "mixed", "patch_smooth", "varied")


def _box(region: np.ndarray, pad: int) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(region)
    h, w = region.shape
    return max(0, ys.min() - pad), min(h, ys.max() + 1 + pad), max(0, xs.min() - pad), min(w, xs.max() + 1 + pad)


def _feather(h: int, w: int) -> np.ndarray:
    """A (h, w) blending weight: 1 inside, falling to 0 over about 3 px at the edges."""
    alpha = np.zeros((h, w), np.float32)
    alpha[1:-1, 1:-1] = 1.0
    alpha = ndimage.gaussian_filter(alpha, 1.5)
    return np.clip(alpha / max(float(alpha.max()), 1e-6), 0.0, 1.0)


def cover(image: np.ndarray, region: np.ndarray, rng: np.random.Generator, avoid: np.ndarray | None = None,
          tries: int = 12) -> np.ndarray:
    """``image`` with the bounding box of ``region`` (padded by 3 px) covered by a patch of the same image taken
    where it does not touch ``avoid``, chosen among ``tries`` places as the one whose mean is nearest the box's
    surroundings; the patch is feathered in over 3 px."""
    h, w = image.shape
    y0, y1, x0, x1 = _box(region, 3)
    bh, bw = y1 - y0, x1 - x0
    if bh >= h or bw >= w:
        return image.copy()
    around = image[max(0, y0 - 4):y1 + 4, max(0, x0 - 4):x1 + 4]
    target = float(around.mean())
    blocked = region if avoid is None else (region | avoid)
    best: tuple[float, int, int] | None = None
    for _ in range(tries):
        ny, nx = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        if blocked[ny:ny + bh, nx:nx + bw].any() or (abs(ny - y0) < bh and abs(nx - x0) < bw):
            continue
        gap = abs(float(image[ny:ny + bh, nx:nx + bw].mean()) - target)
        if best is None or gap < best[0]:
            best = (gap, ny, nx)
    out = image.astype(np.float32).copy()
    if best is None:
        out[y0:y1, x0:x1] = target
        return out
    _, ny, nx = best
    alpha = _feather(bh, bw)
    patch = image[ny:ny + bh, nx:nx + bw].astype(np.float32)
    out[y0:y1, x0:x1] = alpha * patch + (1 - alpha) * out[y0:y1, x0:x1]
    return out


def lateral(image: np.ndarray, region: np.ndarray, rng: np.random.Generator,
            avoid: np.ndarray | None = None) -> np.ndarray:
    """``image`` with the bounding box of ``region`` (padded by 3 px) covered by the strip of the same width just
    beside it, left or right, at the same rows (ultrasound: the same depth, so the same attenuation), feathered in
    over 3 px; only a strip that does not touch ``avoid`` (the lesion, for a region elsewhere) is taken; a patch
    cover (:func:`cover`) where neither side has room."""
    h, w = image.shape
    y0, y1, x0, x1 = _box(region, 3)
    bw = x1 - x0
    clear = (lambda a, b: True) if avoid is None else (lambda a, b: not avoid[y0:y1, a:b].any())
    sides = [s for s, room in ((-1, x0 - bw >= 0 and clear(x0 - bw, x0)), (1, x1 + bw <= w and clear(x1, x1 + bw))) if room]
    if not sides:
        return cover(image, region, rng, avoid=avoid)
    side = sides[int(rng.integers(len(sides)))]
    src = image[y0:y1, x0 - bw:x0] if side < 0 else image[y0:y1, x1:x1 + bw]
    alpha = _feather(y1 - y0, bw)
    out = image.astype(np.float32).copy()
    out[y0:y1, x0:x1] = alpha * src.astype(np.float32) + (1 - alpha) * out[y0:y1, x0:x1]
    return out


def _fill(image: np.ndarray, region: np.ndarray, rng: np.random.Generator, infill: str,
          avoid: np.ndarray | None = None) -> np.ndarray:
    if infill == "varied":
        pick = int(rng.integers(3))
        if pick == 1:
            return erase_smooth(image, ndimage.binary_dilation(region, iterations=3), seed=int(rng.integers(2**31)))
        if pick == 2:
            return lateral(image, region, rng, avoid=avoid)
    if infill == "mixed" and float(rng.random()) < 0.5:  # "patch" draws nothing here: old runs stay reproducible
        grown = ndimage.binary_dilation(region, iterations=3)
        return erase(image, grown, blur=float(rng.uniform(1.0, 4.0)))
    if infill == "patch_smooth" and float(rng.random()) < 0.5:
        grown = ndimage.binary_dilation(region, iterations=3)
        return erase_smooth(image, grown, seed=int(rng.integers(2**31)))
    return cover(image, region, rng, avoid=avoid)


def counterfactual(image: np.ndarray, lesion: np.ndarray, rng: np.random.Generator, p_lesion: float,
                   p_elsewhere: float, infill: str = "patch") -> tuple[np.ndarray, bool, bool]:
    """Maybe cover the lesion or a same-sized region elsewhere (``infill``: see :data:`INFILLS`). Returns (image,
    lesion covered, anything covered)."""
    if infill not in INFILLS:
        raise OptionError(f"Unknown in-fill {infill!r}; use one of {', '.join(INFILLS)}.")
    if not lesion.any():
        return image, False, False
    u = float(rng.random())
    if u < p_lesion:
        return _fill(image, lesion, rng, infill), True, True
    if u < p_lesion + p_elsewhere:
        y0, y1, x0, x1 = _box(lesion, 0)
        box = np.zeros_like(lesion)
        box[y0:y1, x0:x1] = True
        moved = region_elsewhere(box, rng, tries=20)
        if moved is not None:
            return _fill(image, moved, rng, infill, avoid=lesion), False, True
    return image, False, False


#: What a twin is: its lesion in-filled, a same-sized region elsewhere in-filled, or no twin (no lesion or no place).
TWIN_LESION, TWIN_ELSEWHERE, TWIN_NONE = 1, 0, -1


def twin(image: np.ndarray, lesion: np.ndarray, rng: np.random.Generator, infill: str = "mixed") -> tuple[np.ndarray, int]:
    """The paired counterfactual of a tumor image: half of the time its lesion in-filled (``TWIN_LESION``), else a
    same-sized region elsewhere (``TWIN_ELSEWHERE``); ``TWIN_NONE`` (and the image) where there is no lesion or no
    place elsewhere. Unlike :func:`counterfactual`, the label is never switched: the pair is compared instead."""
    if infill not in INFILLS:
        raise OptionError(f"Unknown in-fill {infill!r}; use one of {', '.join(INFILLS)}.")
    if not lesion.any():
        return image, TWIN_NONE
    if float(rng.random()) < 0.5:
        return _fill(image, lesion, rng, infill), TWIN_LESION
    y0, y1, x0, x1 = _box(lesion, 0)
    box = np.zeros_like(lesion)
    box[y0:y1, x0:x1] = True
    moved = region_elsewhere(box, rng, tries=20)
    if moved is None:
        return image, TWIN_NONE
    return _fill(image, moved, rng, infill, avoid=lesion), TWIN_ELSEWHERE
