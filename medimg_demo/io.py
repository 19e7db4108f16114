"""Decode an uploaded file (PNG/JPEG or DICOM) into a :class:`Study`.

This is the only module that sees DICOM attributes. It keeps the pixels, the modality, the pixel
spacing and the file's own display window; every other attribute (names, ids, dates, UIDs,
addresses) stays here and is dropped with the dataset. Nothing in a :class:`Study`, no log line and
no error message carries an identifier, an attribute value or the uploaded file's name.

DICOM pipeline (PS3.3 C.7.6.3, C.11): stored values -> modality LUT (rescale slope/intercept or
Modality LUT Sequence) = ``values`` (Hounsfield units for CT) -> VOI LUT Sequence or window
centre/width -> MONOCHROME1 inversion -> ``pixels`` in [0, 1] for display. Compressed transfer
syntaxes decode through pydicom's plugins (pylibjpeg: JPEG, JPEG-LS, JPEG 2000, RLE).
"""

from __future__ import annotations

import hashlib
import io as _io
import logging
import os
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import InputError
from .windowing import apply_window

log = logging.getLogger(__name__)
# pydicom may echo element values (dates, names) in its own warnings and log lines: keep them out of our logs.
logging.getLogger("pydicom").setLevel(logging.CRITICAL)

ACCEPTED = "PNG or JPEG images (8- or 16-bit; grayscale, RGB or RGBA) and DICOM image files (.dcm or no extension)"

#: Largest image, in pixels (all frames), decoded before refusing: a guard against decompression bombs.
MAX_PIXELS = int(os.environ.get("MEDIMG_MAX_PIXELS", str(64 * 1024 * 1024)))
#: Largest upload in bytes (the deployer may lower it with MEDIMG_MAX_UPLOAD_MB).
MAX_BYTES = int(float(os.environ.get("MEDIMG_MAX_UPLOAD_MB", "200")) * 1024 * 1024)
#: Smallest side accepted, and the most elongated shape (a 1xN strip is no scan).
MIN_SIDE = 32
MAX_ASPECT = 8.0

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"

#: DICOM objects that carry pixel data but are not images to classify.
_NON_IMAGE_MODALITIES = {"SEG", "RTDOSE", "RTSTRUCT", "RTPLAN", "RTIMAGE_PLAN", "SR", "KO", "PR", "REG", "RWV", "DOC"}
_NON_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "a segmentation",
    "1.2.840.10008.5.1.4.1.1.481.2": "an RT dose grid",
    "1.2.840.10008.5.1.4.1.1.481.3": "an RT structure set",
    "1.2.840.10008.5.1.4.1.1.481.5": "an RT plan",
    "1.2.840.10008.5.1.4.1.1.104.1": "an encapsulated PDF",
}
#: Modalities whose images often carry burned-in text (ultrasound, secondary capture, ...).
_BURNED_IN_MODALITIES = {"US", "SC", "OT", "XC", "ES", "GM", "SM"}

BURNED_IN_WARNING = (
    "This image may carry burned-in text (patient details in the pixels); check before sharing screenshots."
)


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
    pixel_spacing_mm: tuple[float, float] | None = None
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


def _check_shape(h: int, w: int) -> None:
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


def _finish(pixels: np.ndarray, source_format: str, **meta: object) -> Study:
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim != 2:
        raise InputError(f"Expected a 2-D image after decoding, got shape {pixels.shape}. Accepted: {ACCEPTED}.")
    _check_shape(*pixels.shape)
    if not np.all(np.isfinite(pixels)):
        raise InputError("The image holds NaN or infinite values; export it again as PNG or DICOM with valid pixels.")
    pixels = np.ascontiguousarray(pixels)
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
        return _minmax(arr).astype(np.float32)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # Transparent pixels carry no anatomy: composite onto black, then to luminance.
        img = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (0, 0, 0, 255)), img)
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
                    f"The image is {w}x{h} pixels, more than the limit of {MAX_PIXELS:,}; downsample it before uploading."
                )
            _check_shape(h, w)
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
    return _finish(gray, kind)


# ----------------------------------------------------------------------------------------------
# DICOM
# ----------------------------------------------------------------------------------------------
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


def _file_window(ds: object) -> tuple[float, float] | None:
    try:
        c, w = _first(ds.WindowCenter), _first(ds.WindowWidth)  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError, IndexError, KeyError):
        return None
    return (c, w) if np.isfinite(c) and np.isfinite(w) and w > 0 else None


def _decode_dicom(data: bytes, frame: int | None) -> Study:
    import pydicom
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(_io.BytesIO(data), force=True)
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise InputError(
            "This DICOM file holds no image (no Pixel Data): it may be a structured report, RT plan or similar. "
            "Upload an image DICOM (CT, MR, US, CR/DX, ...)."
        )
    modality = str(ds.get("Modality", "") or "").upper() or None
    sop = str(ds.get("SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    if sop in _NON_IMAGE_SOP_CLASSES or modality in _NON_IMAGE_MODALITIES:
        what = _NON_IMAGE_SOP_CLASSES.get(sop, f"a {modality} object")
        raise InputError(f"This DICOM file is {what}, not an image to classify. Upload a CT, MR, US or radiograph image.")

    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if rows <= 0 or cols <= 0:
        raise InputError("The DICOM header gives no image size (Rows/Columns); the file is damaged.")
    if rows * cols * max(n_frames, 1) > MAX_PIXELS:
        raise InputError(
            f"The DICOM image is {cols}x{rows} pixels x {n_frames} frames, over the limit of {MAX_PIXELS:,} pixels "
            "this server decodes; upload a single series or a smaller export."
        )
    _check_shape(rows, cols)
    if n_frames > 1:
        frame_index = n_frames // 2 if frame is None else frame  # middle frame first
        if not 0 <= frame_index < n_frames:
            raise InputError(f"Frame {frame_index + 1} does not exist; this file has {n_frames} frames.")
        arr = np.asarray(ds.pixel_array)[frame_index]
    else:
        frame_index = 0
        arr = np.asarray(ds.pixel_array)
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and not np.little_endian):
        arr = arr.astype(arr.dtype.newbyteorder("<"))

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").upper()
    notes: list[str] = []
    burned = str(ds.get("BurnedInAnnotation", "") or "").upper() == "YES"
    if burned or modality in _BURNED_IN_MODALITIES:
        notes.append(BURNED_IN_WARNING)
    spacing = None
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        val = ds.get(key)
        if val is not None:
            try:
                row_mm, col_mm = (float(v) for v in list(val)[:2])
            except (TypeError, ValueError):
                continue
            if row_mm > 0 and col_mm > 0 and np.isfinite(row_mm) and np.isfinite(col_mm):
                spacing = (row_mm, col_mm)
                break
    meta = dict(modality=modality, pixel_spacing_mm=spacing, n_frames=n_frames, frame_index=frame_index, warnings=tuple(notes))

    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        samples = 3
    if samples > 1 or arr.ndim == 3:
        if arr.ndim != 3 or arr.shape[-1] < 3:
            raise InputError("This colour DICOM has an unexpected pixel layout; export it as RGB or grayscale.")
        rgb = arr[..., :3].astype(np.float64)
        top = float(2 ** int(ds.get("BitsStored", 8) or 8) - 1) if photometric != "PALETTE COLOR" else 65535.0
        gray = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / top
        return _finish(np.clip(gray, 0.0, 1.0), "dicom", **meta)

    values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise InputError("The DICOM pixel data holds NaN or infinite values; export the image again.")
    invert = photometric == "MONOCHROME1"
    window = None
    if ds.get("VOILUTSequence"):
        # A non-linear VOI LUT: apply it once; the result is what the file asks to be shown.
        values = _minmax(np.asarray(apply_voi_lut(values, ds, prefer_lut=True), dtype=np.float64))
        window = (0.5, 1.0)
    else:
        window = _file_window(ds)
    if window is None:
        lo, hi = float(values.min()), float(values.max())
        window = ((lo + hi) / 2.0, max(hi - lo, 1e-6))
        pixels = _minmax(values)
        pixels = 1.0 - pixels if invert else pixels
    else:
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        pixels = apply_window(values, window[0], window[1], function=function, invert=invert)
    return _finish(pixels, "dicom", values=values.astype(np.float32), window=window, invert=invert, **meta)


#: What a damaged DICOM can raise inside pydicom and its decoders; each becomes an InputError.
_DICOM_FAILURES = (
    ValueError, TypeError, KeyError, IndexError, AttributeError, EOFError, OSError, RuntimeError,
    NotImplementedError, struct.error, OverflowError, ZeroDivisionError, MemoryError, AssertionError,
)


def _read_dicom(data: bytes, frame: int | None = None) -> Study:
    from pydicom.errors import BytesLengthException, InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warnings can quote attribute values (PHI)
            return _decode_dicom(data, frame)
    except InputError:
        raise
    except InvalidDicomError as exc:
        raise InputError(f"The DICOM file could not be parsed; it may be damaged. Accepted: {ACCEPTED}.") from exc
    except BaseException as exc:  # noqa: BLE001 - narrowed at once, see below
        # Decoders written in Rust (pylibjpeg-rle) raise pyo3's PanicException, a BaseException, on corrupt
        # streams; everything else that is not a known decode failure (KeyboardInterrupt, ...) is re-raised.
        known = (*_DICOM_FAILURES, BytesLengthException)
        if not isinstance(exc, known) and type(exc).__name__ != "PanicException":
            raise
        kind = type(exc).__name__
        if isinstance(exc, (NotImplementedError, RuntimeError)) and "decode" in str(exc).lower():
            raise InputError(
                "The DICOM pixel data uses a compression this server cannot decode. "
                "Export it uncompressed (Explicit VR Little Endian) and upload again."
            ) from exc
        log.info("DICOM decode failed (%s)", kind)  # the type only: messages may quote values
        raise InputError(
            "The DICOM file is damaged: its pixel data is missing, truncated or inconsistent with its header. "
            "Export the image again."
        ) from exc


def _looks_like_dicom(data: bytes) -> bool:
    if len(data) >= 132 and data[128:132] == b"DICM":
        return True
    # No preamble: a raw data set starts with a group 0x0002 or 0x0008 tag (little or big endian).
    return data[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x08", b"\x00\x02") and len(data) > 64


def read_bytes(data: bytes, frame: int | None = None) -> Study:
    """Decode raw file bytes; the format is sniffed from the content, never from a file name.

    ``frame``: 0-based frame of a multi-frame DICOM (default: the middle frame).
    """
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
        return _read_dicom(data, frame)
    raise InputError(f"This file is not a recognised image. Accepted: {ACCEPTED}.")


def read_file(path: str | os.PathLike[str], frame: int | None = None) -> Study:
    """Decode a file on disk. Its name is never copied into the Study, logs or errors."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise InputError("The file could not be opened; upload it again.") from exc
    if size > MAX_BYTES:
        raise InputError(f"The file is {size / 1e6:.0f} MB, over the limit of {MAX_BYTES / 1e6:.0f} MB set for this server.")
    return read_bytes(p.read_bytes(), frame)
