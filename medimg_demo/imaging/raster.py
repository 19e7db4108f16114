"""PNG and JPEG (8- or 16-bit; grayscale, RGB, RGBA, palette) -> :class:`Study`, with a decompression-bomb guard."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from .study import ACCEPTED, MAX_PIXELS, Study, check_shape, finish, minmax


def _to_unit_gray(img: Image.Image) -> np.ndarray:
    """Any PIL mode -> 2-D float in [0, 1], keeping 16-bit precision."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img, dtype=np.float32) / 65535.0
    if mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return np.clip(arr / top, 0.0, 1.0).astype(np.float32)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise InputError("The image holds NaN or infinite values; export it again with valid pixels.")
        return minmax(arr).astype(np.float32)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # Transparent pixels carry no anatomy: composite onto black, then to luminance.
        img = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (0, 0, 0, 255)), img)
    if mode != "L":
        img = img.convert("RGB").convert("L")  # ITU-R 601-2 luma
    return np.asarray(img, dtype=np.float32) / 255.0


def read_raster(data: bytes, kind: str) -> Study:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise InputError(
                    f"The image is {w}x{h} pixels, more than the limit of {MAX_PIXELS:,}; downsample it before uploading."
                )
            check_shape(h, w)
            img.load()
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            gray = _to_unit_gray(img)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError("The image is too large to decode safely (decompression-bomb guard); downsample it.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError, IndexError, EOFError,
            struct.error, zlib.error, ZeroDivisionError, MemoryError, KeyError, AttributeError) as exc:
        # Decoder failures of a damaged file; the message names no file and no decoder internals.
        raise InputError(f"The {kind.upper()} file is damaged or truncated and cannot be decoded. Accepted: {ACCEPTED}.") from exc
    return finish(gray, kind)

