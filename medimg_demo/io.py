"""Decode an uploaded file (PNG/JPEG or DICOM) into a :class:`Study`.

This is the only module that sees DICOM attributes. It keeps the pixels, the modality and the
pixel spacing; every other attribute (names, ids, dates, UIDs, addresses) stays here and is
dropped with the dataset. Nothing in a :class:`Study` and no error message carries an identifier
or the uploaded file's name.

DICOM display pipeline (PS3.3 C.11): stored values -> modality LUT (rescale slope/intercept or
Modality LUT Sequence) -> VOI LUT Sequence or window centre/width -> MONOCHROME1 inversion ->
float image in [0, 1].
"""

from __future__ import annotations

import hashlib
import io as _io
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import InputError

log = logging.getLogger(__name__)

ACCEPTED = "PNG or JPEG images (8- or 16-bit; grayscale, RGB or RGBA) and DICOM files (.dcm or no extension)"

#: Largest image, in pixels, decoded before refusing (a guard against decompression bombs).
MAX_PIXELS = int(os.environ.get("MEDIMG_MAX_PIXELS", str(64 * 1024 * 1024)))
#: Largest upload in bytes (the deployer may lower it with MEDIMG_MAX_UPLOAD_MB).
MAX_BYTES = int(float(os.environ.get("MEDIMG_MAX_UPLOAD_MB", "200")) * 1024 * 1024)
#: Smallest side accepted; smaller images carry too little to classify.
MIN_SIDE = 16

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass(frozen=True)
class Study:
    """A decoded image and the few attributes that are safe to pass on.

    ``pixels`` is a 2-D float32 array in [0, 1] (display-ready grey levels). ``sha256`` is the
    SHA-256 of the decoded pixels (not of the file), used to key feedback without storing images.
    """

    pixels: np.ndarray
    source_format: str  # "png", "jpeg" or "dicom"
    modality: str | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    n_frames: int = 1
    frame_index: int = 0
    sha256: str = field(default="")

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def pixel_hash(pixels: np.ndarray) -> str:
    """SHA-256 of the decoded pixels (quantised to 16 bits so it is stable across float noise)."""
    q = np.round(np.clip(pixels, 0.0, 1.0) * 65535.0).astype("<u2")
    h = hashlib.sha256()
    h.update(np.asarray(q.shape, dtype="<u4").tobytes())
    h.update(q.tobytes())
    return h.hexdigest()


def _finish(pixels: np.ndarray, source_format: str, **meta: object) -> Study:
    pixels = np.ascontiguousarray(pixels, dtype=np.float32)
    if pixels.ndim != 2:
        raise InputError(f"Expected a 2-D image after decoding, got shape {pixels.shape}. Accepted: {ACCEPTED}.")
    h, w = pixels.shape
    if min(h, w) < MIN_SIDE:
        raise InputError(
            f"The image is {w}x{h} pixels; at least {MIN_SIDE} pixels on each side are needed. "
            "Upload the full-resolution scan."
        )
    if not np.all(np.isfinite(pixels)):
        raise InputError("The image holds NaN or infinite values; export it again as PNG or DICOM with valid pixels.")
    return Study(pixels=pixels, source_format=source_format, sha256=pixel_hash(pixels), **meta)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# PNG / JPEG
# ----------------------------------------------------------------------------------------------
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
        lo, hi = float(arr.min()), float(arr.max())
        return ((arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)).astype(np.float32)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # Transparent pixels carry no anatomy: composite onto black, then to luminance.
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(bg, img)
    if mode != "L":
        img = img.convert("RGB").convert("L")  # ITU-R 601-2 luma
    return np.asarray(img, dtype=np.float32) / 255.0


def _read_raster(data: bytes, kind: str) -> Study:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(_io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise InputError(
                    f"The image is {w}x{h} pixels, more than the limit of {MAX_PIXELS:,}; "
                    "downsample it before uploading."
                )
            img.load()
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError("The image is too large to decode safely (decompression-bomb guard); downsample it.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"The {kind.upper()} file is damaged or truncated and cannot be decoded. Accepted: {ACCEPTED}.") from exc
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    return _finish(_to_unit_gray(img), kind)


# ----------------------------------------------------------------------------------------------
# DICOM
# ----------------------------------------------------------------------------------------------
def _window(arr: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """Linear, linear-exact or sigmoid VOI window (PS3.3 C.11.2.1.2/3) to [0, 1]."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (arr - center) / max(width, 1e-6)))
    if function == "LINEAR_EXACT":
        lo, hi = center - width / 2.0, center + width / 2.0
        out = (arr - lo) / max(hi - lo, 1e-6)
    else:  # LINEAR (default)
        width = max(width, 1.0)
        out = ((arr - (center - 0.5)) / (width - 1.0)) + 0.5 if width > 1 else (arr > center - 0.5).astype(float)
    return np.clip(out, 0.0, 1.0)


def _first(value: object) -> float:
    """DICOM multi-valued numbers (window centre/width) -> the first value."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = list(value)[0]  # type: ignore[arg-type]
    return float(value)  # type: ignore[arg-type]


def _minmax(arr: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if hi <= lo:
        return np.zeros_like(arr, dtype=np.float64)
    return (arr - lo) / (hi - lo)


def _read_dicom(data: bytes) -> Study:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(_io.BytesIO(data), force=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise InputError(f"The DICOM file could not be parsed; it may be damaged. Accepted: {ACCEPTED}.") from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise InputError(
            "This DICOM file holds no image (no Pixel Data): it may be a structured report, RT plan or similar. "
            "Upload an image DICOM (CT, MR, US, CR/DX, ...)."
        )
    try:
        arr = np.asarray(ds.pixel_array)
    except (NotImplementedError, RuntimeError) as exc:
        tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(tsyntax, "name", "unknown")
        raise InputError(
            f"The DICOM pixel data uses a transfer syntax this server cannot decode ({name}). "
            "Export it uncompressed (Explicit VR Little Endian) and upload again."
        ) from exc
    except (ValueError, AttributeError, KeyError, TypeError, IndexError, EOFError, OSError) as exc:
        raise InputError(
            "The DICOM pixel data is missing, truncated or inconsistent with its header; export the image again."
        ) from exc

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    frame_index = 0
    if n_frames > 1:
        frame_index = n_frames // 2  # middle frame first
        arr = arr[frame_index]
    color = samples > 1 or arr.ndim == 3
    if color:
        # pydicom converts YBR to RGB by default; reduce to luminance for a grayscale model.
        rgb = arr.astype(np.float64)
        if rgb.ndim != 3 or rgb.shape[-1] < 3:
            raise InputError("This colour DICOM has an unexpected pixel layout; export it as RGB or grayscale.")
        bits = int(ds.get("BitsStored", 8) or 8)
        gray = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / float(2**bits - 1)
        pixels = np.clip(gray, 0.0, 1.0)
    else:
        values = apply_modality_lut(arr, ds).astype(np.float64)
        if not np.all(np.isfinite(values)):
            raise InputError("The DICOM pixel data holds NaN or infinite values; export the image again.")
        if ds.get("VOILUTSequence"):
            pixels = _minmax(apply_voi_lut(values, ds, prefer_lut=True).astype(np.float64))
        elif "WindowCenter" in ds and "WindowWidth" in ds and ds.WindowCenter is not None and ds.WindowWidth is not None:
            function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
            pixels = _window(values, _first(ds.WindowCenter), _first(ds.WindowWidth), function)
        else:
            pixels = _minmax(values)
        if photometric == "MONOCHROME1":
            pixels = 1.0 - pixels

    spacing = None
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        val = ds.get(key)
        if val is not None:
            try:
                row, col = (float(v) for v in list(val)[:2])
                if row > 0 and col > 0:
                    spacing = (row, col)
                    break
            except (TypeError, ValueError):
                log.warning("Ignoring a malformed pixel spacing attribute")
    modality = str(ds.get("Modality", "") or "") or None
    return _finish(
        pixels, "dicom", modality=modality, pixel_spacing_mm=spacing, n_frames=n_frames, frame_index=frame_index
    )


def _looks_like_dicom(data: bytes) -> bool:
    if len(data) >= 132 and data[128:132] == b"DICM":
        return True
    # No preamble: a raw data set starts with a group 0x0002 or 0x0008 tag (little endian) or big endian 0x0008.
    head = data[:4]
    return head[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x08") and len(data) > 64


def read_bytes(data: bytes) -> Study:
    """Decode raw file bytes; the format is sniffed from the content, never from a file name."""
    if not data:
        raise InputError(f"The file is empty. Accepted: {ACCEPTED}.")
    if len(data) > MAX_BYTES:
        raise InputError(
            f"The file is {len(data) / 1e6:.0f} MB, over the limit of {MAX_BYTES / 1e6:.0f} MB set for this server."
        )
    if data.startswith(_PNG_MAGIC):
        return _read_raster(data, "png")
    if data.startswith(_JPEG_MAGIC):
        return _read_raster(data, "jpeg")
    if _looks_like_dicom(data):
        return _read_dicom(data)
    raise InputError(f"This file is not a recognised image. Accepted: {ACCEPTED}.")


def read_file(path: str | os.PathLike[str]) -> Study:
    """Decode a file on disk. Its name is never copied into the Study, logs or errors."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise InputError("The file could not be opened; upload it again.") from exc
    if size > MAX_BYTES:
        raise InputError(f"The file is {size / 1e6:.0f} MB, over the limit of {MAX_BYTES / 1e6:.0f} MB set for this server.")
    return read_bytes(p.read_bytes())
