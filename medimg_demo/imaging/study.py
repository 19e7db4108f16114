"""A decoded image and the few attributes that are safe to pass on; shared checks of every decoder.

Nothing in a :class:`Study`, no log line and no error message carries an identifier, an attribute value or the
uploaded file's name.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import settings
from ..errors import InputError
from .windowing import apply_window

ACCEPTED = "PNG or JPEG images (8- or 16-bit; grayscale, RGB or RGBA) and DICOM image files (.dcm or no extension)"


#: Largest image (one frame), in pixels, decoded before refusing (default 8000x8000): bounds the full-size decode
#: buffer (at most 4 bytes a pixel: 256 MB) and guards against decompression bombs. Deployers may lower it.
MAX_PIXELS = settings.whole("MEDIMG_MAX_PIXELS", 64_000_000, "pixels an image may have", low=1)
#: Longest side of what is shown and analysed: a larger image is reduced while it is decoded (JPEG: DCT scaling;
#: PNG and DICOM: block averages, strip by strip), so memory stays bounded; its pixel spacing scales with it.
MAX_SIDE = 2048
#: Smallest side accepted, and the most elongated shape (a 1xN strip is no scan).
MIN_SIDE = 32
MAX_ASPECT = 8.0


@dataclass(frozen=True)
class Study:
    """A decoded image and the few attributes that are safe to pass on.

    ``pixels``: 2-D float32 in [0, 1], display-ready with the file's own window (for PNG/JPEG the grey
    levels). ``values``: for grayscale DICOM, the modality-LUT output of the shown frame (HU for CT),
    so that any other window can be applied. ``sha256``: SHA-256 of the decoded display pixels (not of
    the file), used to key feedback without storing images.
    """

    pixels: np.ndarray
    source_format: str  # "png", "jpeg" or "dicom"
    modality: str | None = None
    body_part: str | None = None  # DICOM BodyPartExamined (upper case), where the file states one
    pixel_spacing_mm: tuple[float, float] | None = None
    spacing_source: str = ""  # where a spacing not in the file came from (``known_spacing.SOURCE``); "" if the file's
    n_frames: int = 1
    frame_index: int = 0
    values: np.ndarray | None = field(default=None, repr=False)
    window: tuple[float, float] | None = None  # the file's own (centre, width), if any
    invert: bool = False  # MONOCHROME1: low values are shown bright
    warnings: tuple[str, ...] = ()
    sha256: str = ""

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def value_range(self) -> tuple[float, float] | None:
        if self.values is None:
            return None
        return float(self.values.min()), float(self.values.max())

    def display(self, center: float | None = None, width: float | None = None) -> np.ndarray:
        """Pixels in [0, 1] under another window (values in modality units); the default view otherwise."""
        if self.values is None or center is None or width is None:
            return self.pixels
        return apply_window(self.values, center, width, invert=self.invert)


def pixel_hash(pixels: np.ndarray) -> str:
    """SHA-256 of the decoded pixels (quantised to 16 bits so it is stable across float noise)."""
    q = np.round(np.clip(pixels, 0.0, 1.0) * 65535.0).astype("<u2")
    h = hashlib.sha256()
    h.update(np.asarray(q.shape, dtype="<u4").tobytes())
    h.update(q.tobytes())
    return h.hexdigest()


def check_shape(h: int, w: int) -> None:
    if min(h, w) < MIN_SIDE:
        raise InputError(
            f"The image is {w}x{h} pixels; at least {MIN_SIDE} pixels on each side are needed. "
            "Upload the full-resolution scan."
        )
    if max(h, w) / min(h, w) > MAX_ASPECT:
        raise InputError(
            f"The image is {w}x{h} pixels, a strip rather than a scan (aspect ratio over {MAX_ASPECT:.0f}:1). "
            "Upload a single axial slice or radiograph."
        )


def finish(pixels: np.ndarray, source_format: str, **meta: object) -> Study:
    """Every decoder ends here: a 2-D, finite, large-enough image with its pixel hash."""
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim != 2:
        raise InputError(f"Expected a 2-D image after decoding, got shape {pixels.shape}. Accepted: {ACCEPTED}.")
    check_shape(*pixels.shape)
    if not np.all(np.isfinite(pixels)):
        raise InputError("The image holds NaN or infinite values; export it again as PNG or DICOM with valid pixels.")
    pixels = np.ascontiguousarray(pixels)
    return Study(pixels=pixels, source_format=source_format, sha256=pixel_hash(pixels), **meta)  # type: ignore[arg-type]


def minmax(arr: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the array's own range (all zeros for a flat image); float32, as every decoder keeps."""
    arr = np.asarray(arr, dtype=np.float32)
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if hi <= lo:
        return np.zeros_like(arr, dtype=np.float32)
    return (arr - lo) / np.float32(hi - lo)


def reduction_factor(height: int, width: int) -> int:
    """Integer factor that brings the longer side to at most :data:`MAX_SIDE` (1: kept as it is)."""
    return max(1, math.ceil(max(height, width) / MAX_SIDE))


def block_reduce(height: int, factor: int, strip: Callable[[int, int], np.ndarray]) -> np.ndarray:
    """Mean of ``factor`` x ``factor`` blocks of an image read strip by strip (``strip(y0, y1)`` -> rows y0..y1 as a
    2-D array), as float32: no full-size float copy of a large image is ever made. Edge blocks repeat the last row
    or column, so every output pixel spans exactly ``factor`` input pixels (pixel spacing x factor)."""
    if factor == 1:
        return np.asarray(strip(0, height), dtype=np.float32)
    step = factor * max(1, 256 // factor)
    out = []
    for y0 in range(0, height, step):
        a = np.asarray(strip(y0, min(height, y0 + step)), dtype=np.float32)
        h, w = a.shape
        hp, wp = -(-h // factor) * factor, -(-w // factor) * factor
        if (hp, wp) != (h, w):
            a = np.pad(a, ((0, hp - h), (0, wp - w)), mode="edge")
        out.append(a.reshape(hp // factor, factor, wp // factor, factor).mean(axis=(1, 3), dtype=np.float32))
    return np.concatenate(out)


def reduced_note(height: int, width: int, shown: tuple[int, ...]) -> tuple[str, ...]:
    """The notice shown with a reduced image (none when it was not reduced)."""
    if (shown[0], shown[1]) == (height, width):
        return ()
    return (f"The image ({width}x{height} pixels) is shown and analysed at {shown[1]}x{shown[0]} (longer side at most "
            f"{MAX_SIDE}); sizes in mm account for it.",)

