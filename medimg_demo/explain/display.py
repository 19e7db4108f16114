"""The viewer's pictures: a zoomed region of the image and of its Grad-CAM overlay, rendered server-side at display
resolution, with a scale bar sized to the picture shown and the heatmap's colour bar beside the overlay.

Small scans (64-320 px) are enlarged to :data:`DISPLAY_SIDE` before anything is drawn on them, so that the scale
bar, its text and the colour bar have the same size on screen for every modality; zooming crops the scan first and
enlarges the crop, so a 4x zoom shows four times the detail, not four times bigger pixels of a small picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .lesion import outline
from .overlay import add_scale_bar, gray_to_rgb, overlay

#: Long side (px) of a picture in the viewer; a larger scan is kept at its own size (never shrunk). 640 px fills the
#: viewer column; zoom renders again from the scan's pixels. (1024 px cost about 100 ms of PNG encoding a request.)
DISPLAY_SIDE = 640
#: The zoom factors the viewer offers.
ZOOMS = (1, 2, 4)
PANEL_RGB = (24, 24, 24)
BOX_RGB = (255, 255, 255)
OUTLINE_RGB = (60, 255, 120)  # the lesion outline: bright green, a colour the jet heatmap uses least


@dataclass(frozen=True)
class Box:
    """A region of the scan in its own pixels: top-left corner and size."""

    y0: int
    x0: int
    h: int
    w: int


@dataclass(frozen=True)
class Pictures:
    """What the viewer shows: the whole scan (image, overlay, overview with the zoomed region outlined) and the
    zoomed region (image, overlay); ``scale`` is display pixels per scan pixel of the whole-scan pictures."""

    image: np.ndarray
    overlay: np.ndarray
    overview: np.ndarray
    zoom_image: np.ndarray
    zoom_overlay: np.ndarray
    box: Box
    scale: float


def heatmap_peak(heatmap: np.ndarray | None, shape: tuple[int, int]) -> tuple[float, float]:
    """(row, column) of the heatmap's maximum, or the centre of an image of ``shape`` without a heatmap."""
    if heatmap is None or not np.isfinite(heatmap).any():
        return (shape[0] - 1) / 2, (shape[1] - 1) / 2
    y, x = np.unravel_index(int(np.nanargmax(heatmap)), heatmap.shape)
    return float(y), float(x)


def zoom_box(shape: tuple[int, int], zoom: int, centre: tuple[float, float] | None = None) -> Box:
    """The region a ``zoom``x view shows around ``centre`` (row, column; default the image centre), kept inside
    the image."""
    h, w = shape
    z = max(1, int(zoom))
    bh, bw = max(1, round(h / z)), max(1, round(w / z))
    cy, cx = centre if centre is not None else ((h - 1) / 2, (w - 1) / 2)
    y0 = int(np.clip(round(cy - (bh - 1) / 2), 0, h - bh))
    x0 = int(np.clip(round(cx - (bw - 1) / 2), 0, w - bw))
    return Box(y0, x0, bh, bw)


def display_scale(shape: tuple[int, int], side: int = DISPLAY_SIDE) -> float:
    """Display pixels per scan pixel for a picture of ``shape``: the long side becomes ``side`` (never shrunk)."""
    return max(1.0, side / max(shape))


def _resize(arr: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """A 2-D float array resized to ``size`` (height, width), values clipped to [0, 1]."""
    if arr.shape == size:
        return np.clip(arr, 0.0, 1.0).astype(np.float32)
    out = Image.fromarray(np.asarray(arr, dtype=np.float32), mode="F").resize((size[1], size[0]), resample)
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def colour_bar_panel(height: int, side: int, cmap: str = "jet") -> np.ndarray:
    """A dark panel (``height`` rows) holding the heatmap's colour scale, high at the top and low at the bottom,
    labelled; its width and text follow ``side``, the long side of the picture it stands beside."""
    width = max(40, round(side * 0.08))
    font_px = max(10, round(side / 48))
    pad = max(4, font_px // 2)
    img = Image.new("RGB", (width, height), PANEL_RGB)
    draw = ImageDraw.Draw(img)
    # the bar fills the middle of the panel: the viewer's buttons sit over the picture's top right corner
    top = max(pad + font_px + pad, round(height * 0.14))
    bottom = min(height - (pad + font_px + pad), round(height * 0.86))
    if bottom - top >= 8:
        ramp = np.linspace(1.0, 0.0, bottom - top)[:, None].repeat(max(4, width // 3), axis=1)
        bar = overlay(np.zeros_like(ramp), ramp, opacity=1.0, cmap=cmap)
        x0 = (width - bar.shape[1]) // 2
        img.paste(Image.fromarray(bar), (x0, top))
        draw.rectangle([x0 - 1, top - 1, x0 + bar.shape[1], bottom], outline=(200, 200, 200))
    font = _font(font_px)
    for text, y in (("high", top - pad - font_px * 1.2), ("low", bottom + pad)):
        draw.text(((width - draw.textlength(text, font=font)) / 2, y), text, fill=(235, 235, 235), font=font)
    return np.asarray(img)


def _with_panel(rgb: np.ndarray, panel: np.ndarray | None) -> np.ndarray:
    """The picture with ``panel`` on its right (or, for the plain image, an empty panel of the same width)."""
    if panel is None:
        return rgb
    return np.concatenate([rgb, panel], axis=1)


def _outline(rgb: np.ndarray, box: Box, scale: float) -> np.ndarray:
    """The zoomed region drawn on the whole-scan overlay (white line on a black one, visible on any colour)."""
    img = Image.fromarray(rgb)
    draw = ImageDraw.Draw(img)
    line = max(2, round(max(rgb.shape[:2]) / 250))
    x0, y0 = box.x0 * scale, box.y0 * scale
    x1, y1 = (box.x0 + box.w) * scale - 1, (box.y0 + box.h) * scale - 1
    draw.rectangle([x0, y0, x1, y1], outline=(0, 0, 0), width=line + 2)
    draw.rectangle([x0 + 1, y0 + 1, x1 - 1, y1 - 1], outline=BOX_RGB, width=line)
    return np.asarray(img)


def _draw_outline(rgb: np.ndarray, lesion: np.ndarray | None, box: Box, size: tuple[int, int]) -> np.ndarray:
    """The lesion's outline (``OUTLINE_RGB`` on a dark edge, so it reads on grey and on the heatmap) over ``rgb``."""
    if lesion is None:
        return rgb
    crop = lesion[box.y0:box.y0 + box.h, box.x0:box.x0 + box.w].astype(np.float32)
    if not crop.any():
        return rgb
    mask = _resize(crop, size, Image.Resampling.NEAREST) > 0.5
    width = max(1, round(max(size) / 320))
    # a zoomed crop's sides inside the image continue the mask as it is at the crop's edge (the lesion goes on beyond
    # what is shown: a line there was a boundary that is not, clinician walkthrough); the image's own edges end it
    pad = width + 2
    mask = np.pad(mask, pad, mode="edge")
    height, breadth = lesion.shape
    for ends_image, side in ((box.y0 == 0, np.s_[:pad, :]), (box.y0 + box.h >= height, np.s_[-pad:, :]),
                             (box.x0 == 0, np.s_[:, :pad]), (box.x0 + box.w >= breadth, np.s_[:, -pad:])):
        if ends_image:
            mask[side] = False
    inside = np.s_[pad:-pad, pad:-pad]
    out = rgb.copy()
    out[outline(mask, width + 1)[inside]] = (0, 0, 0)
    out[outline(mask, width)[inside]] = OUTLINE_RGB
    return out


def _render(gray: np.ndarray, heatmap: np.ndarray | None, box: Box, spacing_mm: tuple[float, float] | None,
            opacity: float, side: int, lesion: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """(image, overlay, scale) of one region at display resolution, each with its scale bar (and lesion outline)."""
    crop = gray[box.y0:box.y0 + box.h, box.x0:box.x0 + box.w]
    scale = display_scale(crop.shape, side)
    size = (round(box.h * scale), round(box.w * scale))
    big = _resize(crop, size, Image.Resampling.BICUBIC)
    spacing = None if spacing_mm is None else (spacing_mm[0] / scale, spacing_mm[1] / scale)
    image = add_scale_bar(_draw_outline(gray_to_rgb(big), lesion, box, size), spacing)
    if heatmap is None:
        return image, image, scale
    heat = _resize(heatmap[box.y0:box.y0 + box.h, box.x0:box.x0 + box.w], size, Image.Resampling.BILINEAR)
    return image, add_scale_bar(_draw_outline(overlay(big, heat, opacity), lesion, box, size), spacing), scale


def pictures(gray: np.ndarray, heatmap: np.ndarray | None, spacing_mm: tuple[float, float] | None,
             opacity: float = 0.45, zoom: int = 1, centre: tuple[float, float] | None = None,
             side: int = DISPLAY_SIDE, lesion: np.ndarray | None = None) -> Pictures:
    """The viewer's pictures of ``gray`` (2-D, [0, 1]) and its ``heatmap``: the whole scan and the ``zoom``x region
    around ``centre`` (row, column in scan pixels; default the heatmap's peak). Where there is a heatmap, the
    overlays carry the colour bar on their right and the plain images an empty panel of the same width (so the
    compare slider lines them up)."""
    if heatmap is not None and heatmap.shape != gray.shape:
        raise ValueError(f"image {gray.shape} and heatmap {heatmap.shape} differ in shape")
    if lesion is not None and lesion.shape != gray.shape:
        raise ValueError(f"image {gray.shape} and lesion {lesion.shape} differ in shape")
    shape = (int(gray.shape[0]), int(gray.shape[1]))
    whole = Box(0, 0, *shape)
    image, over, scale = _render(gray, heatmap, whole, spacing_mm, opacity, side, lesion)
    panel = colour_bar_panel(image.shape[0], max(image.shape[:2])) if heatmap is not None else None
    blank = None if panel is None else np.full_like(panel, PANEL_RGB)
    z = int(zoom) if int(zoom) in ZOOMS else 1
    box = zoom_box(shape, z, centre if centre is not None else heatmap_peak(heatmap, shape))
    if z == 1:
        full_image, full_over = _with_panel(image, blank), _with_panel(over, panel)
        return Pictures(full_image, full_over, full_over, full_image, full_over, whole, scale)
    zi, zo, _ = _render(gray, heatmap, box, spacing_mm, opacity, side, lesion)
    zpanel = colour_bar_panel(zi.shape[0], max(zi.shape[:2])) if heatmap is not None else None
    zblank = None if zpanel is None else np.full_like(zpanel, PANEL_RGB)
    return Pictures(
        image=_with_panel(image, blank),
        overlay=_with_panel(over, panel),
        overview=_with_panel(_outline(over, box, scale), panel),
        zoom_image=_with_panel(zi, zblank),
        zoom_overlay=_with_panel(zo, zpanel),
        box=box,
        scale=scale,
    )
