"""What a decode child answers, checked as if it came from any other untrusted source before the server uses it: the
attributes' types and ranges, the arrays' sizes, finite values and display pixels in [0, 1]; the pixel hash computed
here, never taken from the child (``isolated``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .study import MAX_SIDE, Study, check_shape, pixel_hash


def _array(raw: bytes, shape: tuple[int, int]) -> np.ndarray:
    if len(raw) != shape[0] * shape[1] * 4:
        raise InputError("The image could not be decoded (the decoder returned an inconsistent result).")
    arr = np.frombuffer(raw, dtype=np.float32).reshape(shape).copy()
    if not np.all(np.isfinite(arr)):
        raise InputError("The image holds NaN or infinite values; export it again with valid pixels.")
    return arr


_FORMATS = ("png", "jpeg", "dicom")


def _pair(value: Any, positive: bool) -> tuple[float, float] | None:
    if value is None:
        return None
    pair = tuple(float(v) for v in value)
    if len(pair) != 2 or not all(np.isfinite(pair)) or (positive and min(pair) <= 0):
        raise ValueError("not a pair of finite numbers")
    return pair  # type: ignore[return-value]


def _text(value: Any, longest: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > longest:
        raise ValueError("not a short text")
    return value


def _fields(meta: dict[str, Any]) -> dict[str, Any]:
    """The Study attributes the child sent, each of the type and range a decoder gives (ValueError otherwise)."""
    n_frames, frame_index = meta["n_frames"], meta["frame_index"]
    warnings = meta["warnings"]
    if (meta["source_format"] not in _FORMATS or type(n_frames) is not int or type(frame_index) is not int
            or not 0 <= frame_index < n_frames or type(meta["invert"]) is not bool
            or not isinstance(warnings, list) or len(warnings) > 20 or not all(isinstance(w, str) for w in warnings)):
        raise ValueError("attributes out of range")
    return {"source_format": meta["source_format"], "modality": _text(meta["modality"], 16),
            "body_part": _text(meta["body_part"], 64), "pixel_spacing_mm": _pair(meta["pixel_spacing_mm"], True),
            "spacing_source": _text(meta["spacing_source"], 500) or "", "n_frames": n_frames,
            "frame_index": frame_index, "window": _pair(meta["window"], False), "invert": meta["invert"],
            "warnings": tuple(_text(w, 1000) for w in warnings)}


def study_from_answer(meta: dict[str, Any], pixels: bytes, values: bytes) -> Study:
    """The parent's own Study from what the child sent, checked as if it came from any other untrusted source."""
    try:
        shape = tuple(int(v) for v in meta["shape"])
        fields = _fields(meta)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise InputError("The image could not be decoded (the decoder returned an inconsistent result).") from exc
    if len(shape) != 2 or max(shape) > MAX_SIDE:
        raise InputError("The image could not be decoded (the decoder returned an inconsistent result).")
    check_shape(*shape)
    px = _array(pixels, shape)  # type: ignore[arg-type]
    if px.min() < 0 or px.max() > 1:
        raise InputError("The image could not be decoded (the decoder returned an inconsistent result).")
    vals = _array(values, shape) if meta["has_values"] else None  # type: ignore[arg-type]
    return Study(pixels=px, values=vals, sha256=pixel_hash(px), **fields)
