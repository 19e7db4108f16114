"""PNG and JPEG (8- or 16-bit; grayscale, RGB, RGBA, palette) -> :class:`Study`, with a decompression-bomb guard."""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from . import jpeg_markers
from .study import ACCEPTED, MAX_PIXELS, Study, block_reduce, check_shape, finish, minmax, reduced_note, reduction_factor

# Pillow logs every photo-metadata (EXIF) tag it reads at DEBUG, values included (Artist, ImageDescription, DateTime):
# a command run with -v would print them from a raw JPEG. Its warnings and errors still show.
logging.getLogger("PIL").setLevel(logging.INFO)


def _to_unit_gray(img: Image.Image) -> np.ndarray:
    """Any PIL mode -> 2-D float in [0, 1], keeping 16-bit precision."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img, dtype=np.float32) / 65535.0
    if mode == "I":
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return np.clip(arr / np.float32(top), 0.0, 1.0)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        if not np.all(np.isfinite(arr)):
            raise InputError("The image holds NaN or infinite values; export it again with valid pixels.")
        return minmax(arr)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # Transparent pixels carry no anatomy: composite onto black, then to luminance.
        img = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (0, 0, 0, 255)), img)
    if mode != "L":
        img = img.convert("RGB").convert("L")  # ITU-R 601-2 luma
    return np.asarray(img, dtype=np.float32) / 255.0


def _reduced_gray(img: Image.Image, factor: int) -> np.ndarray:
    """A large decoded image -> gray in [0, 1], reduced by ``factor``, converted strip by strip (never a full-size
    float or RGBA copy). 32-bit modes are scaled by the whole image's range, as :func:`_to_unit_gray` does."""
    w, h = img.size

    def crop(y0: int, y1: int) -> Image.Image:
        return img.crop((0, y0, w, y1))

    if img.mode == "I":
        top = np.float32(65535.0 if img.getextrema()[1] > 255 else 255.0)  # type: ignore[index]
        return np.clip(block_reduce(h, factor, lambda y0, y1: np.asarray(crop(y0, y1), np.float32) / top), 0.0, 1.0)
    if img.mode == "F":
        values = block_reduce(h, factor, lambda y0, y1: np.asarray(crop(y0, y1), np.float32))
        if not np.all(np.isfinite(values)):
            raise InputError("The image holds NaN or infinite values; export it again with valid pixels.")
        return minmax(values)
    return block_reduce(h, factor, lambda y0, y1: _to_unit_gray(crop(y0, y1)))


def read_raster(src: bytes | BinaryIO, kind: str) -> Study:
    """PNG/JPEG bytes or an open file -> Study, reduced while decoding to at most MAX_SIDE pixels a side."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if kind == "jpeg" and (why := jpeg_markers.refusal(src)) is not None:  # decoding work, not memory
                raise jpeg_markers.refused(why)
            img = Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src)
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise InputError(
                    f"The image is {w}x{h} pixels, more than the limit of {MAX_PIXELS:,} set for this server "
                    "(MEDIMG_MAX_PIXELS); downsample it before uploading."
                )
            check_shape(h, w)
            factor = reduction_factor(h, w)
            if factor > 1 and kind == "jpeg":
                img.draft(img.mode, (-(-w // factor), -(-h // factor)))  # decode at 1/2, 1/4 or 1/8 scale
            img.load()
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            factor = reduction_factor(img.size[1], img.size[0])  # what the JPEG decoder did not reduce yet
            gray = _to_unit_gray(img) if factor == 1 else _reduced_gray(img, factor)
            del img
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError("The image is too large to decode safely (decompression-bomb guard); downsample it.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError, IndexError, EOFError,
            struct.error, zlib.error, ZeroDivisionError, MemoryError, KeyError, AttributeError) as exc:
        # Decoder failures of a damaged file; the message names no file and no decoder internals.
        raise InputError(f"The {kind.upper()} file is damaged or truncated and cannot be decoded. Accepted: {ACCEPTED}.") from exc
    return finish(gray, kind, warnings=reduced_note(h, w, gray.shape))
