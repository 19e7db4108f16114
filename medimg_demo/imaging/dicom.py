"""DICOM -> :class:`Study`. With ``deid``, the only code that reads DICOM attributes (the only pydicom user).

It keeps the pixels, the modality, the pixel spacing and the file's own display window; every other attribute
(names, ids, dates, UIDs, addresses) stays here and is dropped with the dataset.

Pipeline (PS3.3 C.7.6.3, C.11): stored values -> modality LUT (rescale slope/intercept or Modality LUT Sequence) =
``values`` (Hounsfield units for CT) -> VOI LUT Sequence or window centre/width -> MONOCHROME1 inversion -> ``pixels``
in [0, 1] for display. Compressed transfer syntaxes decode through pydicom's plugins (pylibjpeg: JPEG, JPEG-LS,
JPEG 2000, RLE). Memory stays bounded: the header is read without the pixel data, one frame is decoded straight
from the file, and a frame larger than MAX_SIDE is block-averaged strip by strip in float32 (spacing scaled).
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
from typing import Any, BinaryIO

import numpy as np

from ..errors import InputError
from . import code_strings
from .study import ACCEPTED, MAX_PIXELS, Study, block_reduce, check_shape, finish, minmax, reduced_note, reduction_factor
from .windowing import apply_window

log = logging.getLogger(__name__)
import pydicom  # noqa: E402 - imported before silencing its logger: its config sets the level on import
import pydicom.config  # noqa: E402

# pydicom may echo element values (dates, names) in its own warnings and log lines (decoder failures are logged
# with tracebacks): keep them out of our logs.
logging.getLogger("pydicom").setLevel(logging.CRITICAL)
# Its value checks on reading warn with the value itself ("Invalid value for VR DA: '<birth date>'"); the local
# warnings.catch_warnings() around decoding is process-wide state that one thread can restore while another still
# decodes (two requests at once), so reading does not check values at all: decoding is the same either way.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

#: DICOM objects that carry pixel data but are not images to classify.
_NON_IMAGE_MODALITIES = {"SEG", "RTDOSE", "RTSTRUCT", "RTPLAN", "SR", "KO", "PR", "REG", "RWV", "DOC"}
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


def _first(value: object) -> float:
    """DICOM multi-valued numbers (window centre/width) -> the first value."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = list(value)[0]  # type: ignore[arg-type]
    return float(value)  # type: ignore[arg-type]


def _file_window(ds: object) -> tuple[float, float] | None:
    try:
        c, w = _first(ds.WindowCenter), _first(ds.WindowWidth)  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError, IndexError, KeyError):
        return None
    return (c, w) if np.isfinite(c) and np.isfinite(w) and w > 0 else None


#: Elements larger than this stay in the file while the header is read (the pixel data, above all).
_DEFER_BYTES = 4 * 1024 * 1024


def _is_jpeg(syntax: object) -> bool:
    from pydicom.uid import JPEGTransferSyntaxes

    return str(syntax or "").rstrip("\0 ") in JPEGTransferSyntaxes


def _decode_dicom(fp: BinaryIO, frame: int | None) -> Study:
    import pydicom
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array

    from .dicom_guard import check_dicom_structure

    # pydicom builds an object an element: their number is bounded first; a Deflated file is refused there, since the
    # frame reader below never inflates it. The file starts at 0, as the frame read assumes.
    check_dicom_structure(fp, fp.seek(0, io.SEEK_END), deflated=False)
    fp.seek(0)
    ds = pydicom.dcmread(fp, force=True, defer_size=_DEFER_BYTES)  # the header; the pixel data is not read here
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise InputError(
            "This DICOM file holds no image (no Pixel Data): it may be a structured report, RT plan or similar. "
            "Upload an image DICOM (CT, MR, US, CR/DX, ...)."
        )
    modality = code_strings.modality(ds.get("Modality", ""))  # a DICOM term or one word, else None
    sop = str(ds.get("SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    if sop in _NON_IMAGE_SOP_CLASSES or modality in _NON_IMAGE_MODALITIES:
        what = _NON_IMAGE_SOP_CLASSES.get(sop, f"a {modality} object")
        raise InputError(f"This DICOM file is {what}, not an image to classify. Upload a CT, MR, US or radiograph image.")

    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if rows <= 0 or cols <= 0:
        raise InputError("The DICOM header gives no image size (Rows/Columns); the file is damaged.")
    if rows * cols > MAX_PIXELS:
        raise InputError(
            f"The DICOM image is {cols}x{rows} pixels a frame, over the limit of {MAX_PIXELS:,} pixels set for this "
            "server (MEDIMG_MAX_PIXELS); upload a smaller export."
        )
    check_shape(rows, cols)
    frame_index = n_frames // 2 if frame is None else frame  # middle frame first
    if not 0 <= frame_index < n_frames:
        count = f"{n_frames} frames (1 to {n_frames})" if n_frames > 1 else "one frame"
        raise InputError(f"Frame {frame_index + 1} does not exist (index {frame_index}, counting from 0); this file "
                         f"has {count}.")
    file_meta = getattr(ds, "file_meta", None)
    syntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    fp.seek(0)
    # Decoders size their buffers by the codestream's own header, not by Rows/Columns, and by samples and bytes a
    # sample, not pixels: the frame's header and its decoded bytes are checked first (see .codestream).
    from .codestream import check_frame

    check_frame(fp, frame_index, syntax)
    # One frame is decoded, read straight from the file: never the whole pixel data, never every frame.
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").upper()
    # A colour JPEG stored as YCbCr: its Y is the grey wanted (0.299 R + 0.587 G + 0.114 B); pydicom's conversion of
    # the whole frame to RGB first took +900 MB and 3.3 s at 8000x8000 (1,650 MB in all, now 730 MB)
    luma = samples > 1 and photometric in ("YBR_FULL", "YBR_FULL_422") and _is_jpeg(syntax)
    arr = pixel_array(fp, index=frame_index, **({"transfer_syntax_uid": syntax} if syntax else {}),
                      raw=luma)
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and not np.little_endian):
        arr = arr.astype(arr.dtype.newbyteorder("<"))

    notes: list[str] = []
    burned = str(ds.get("BurnedInAnnotation", "") or "").upper() == "YES"
    if burned or modality in _BURNED_IN_MODALITIES:
        notes.append(BURNED_IN_WARNING)
    factor = reduction_factor(rows, cols)  # > 1: shown and analysed reduced, the pixel spacing scaled with it
    spacing = None
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        val = ds.get(key)
        if val is not None:
            try:
                row_mm, col_mm = (float(v) for v in list(val)[:2])
            except (TypeError, ValueError):
                continue
            if row_mm > 0 and col_mm > 0 and np.isfinite(row_mm) and np.isfinite(col_mm):
                spacing = (row_mm * factor, col_mm * factor)
                break
    if spacing is None:
        region = ultrasound_spacing(ds)
        if region is not None:
            spacing = (region[0] * factor, region[1] * factor)
    # BodyPartExamined names an anatomical region (CS, no identifier); kept for the gate's header check, as real
    # files write it ("L-SPINE", one long word cut to 16); free text is dropped (see .code_strings).
    body_part = code_strings.body_part(ds.get("BodyPartExamined", ""))
    meta = dict(modality=modality, body_part=body_part, pixel_spacing_mm=spacing, n_frames=n_frames,
                frame_index=frame_index)
    shown = (-(-rows // factor), -(-cols // factor))
    notes.extend(reduced_note(rows, cols, shown))
    meta["warnings"] = tuple(notes)

    if photometric == "PALETTE COLOR" or samples > 1 or arr.ndim == 3:
        palette = photometric == "PALETTE COLOR"
        if not palette and (arr.ndim != 3 or arr.shape[-1] < 3):
            raise InputError("This colour DICOM has an unexpected pixel layout; export it as RGB or grayscale.")
        top = np.float32(65535.0 if palette else float(2 ** int(ds.get("BitsStored", 8) or 8) - 1))

        def gray(y0: int, y1: int) -> np.ndarray:
            if luma:
                return np.asarray(arr[y0:y1, :, 0], dtype=np.float32) / top
            rgb = apply_color_lut(arr[y0:y1], ds) if palette else arr[y0:y1]
            rgb = np.asarray(rgb[..., :3], dtype=np.float32)
            return (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / top

        return finish(np.clip(block_reduce(rows, factor, gray), 0.0, 1.0), "dicom", **meta)

    values = block_reduce(rows, factor, lambda y0, y1: apply_modality_lut(arr[y0:y1], ds))
    del arr
    if not np.all(np.isfinite(values)):
        raise InputError("The DICOM pixel data holds NaN or infinite values; export the image again.")
    invert = photometric == "MONOCHROME1"
    window = None
    if ds.get("VOILUTSequence"):
        # A non-linear VOI LUT: apply it once; the result is what the file asks to be shown.
        values = minmax(np.asarray(apply_voi_lut(values, ds, prefer_lut=True), dtype=np.float32))
        window = (0.5, 1.0)
    else:
        window = _file_window(ds)
    if window is None:
        lo, hi = float(values.min()), float(values.max())
        window = ((lo + hi) / 2.0, max(hi - lo, 1e-6))
        pixels = minmax(values)
        pixels = 1.0 - pixels if invert else pixels
    else:
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        pixels = apply_window(values, window[0], window[1], function=function, invert=invert)
    return finish(pixels, "dicom", values=values, window=window, invert=invert, **meta)


#: What a damaged DICOM can raise inside pydicom and its decoders; each becomes an InputError.
_DICOM_FAILURES = (
    ValueError, TypeError, KeyError, IndexError, AttributeError, EOFError, OSError, RuntimeError,
    NotImplementedError, struct.error, OverflowError, ZeroDivisionError, MemoryError, AssertionError,
)


def read_dicom(src: bytes | BinaryIO, frame: int | None = None) -> Study:
    """DICOM bytes or an open file -> Study of one frame, reduced to at most MAX_SIDE pixels a side."""
    from pydicom.errors import BytesLengthException, InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warnings can quote attribute values (PHI)
            return _decode_dicom(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src, frame)
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


def looks_like_dicom(data: bytes) -> bool:
    if len(data) >= 132 and data[128:132] == b"DICM":
        return True
    # No preamble: a raw data set starts with a group 0x0002 or 0x0008 tag (little or big endian).
    return data[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x08", b"\x00\x02") and len(data) > 64



def ultrasound_spacing(ds: Any) -> tuple[float, float] | None:
    """(row mm, column mm) from the ultrasound region calibration (Sequence of Ultrasound Regions, PS3.3
    C.8.5.5): the first tissue region (Region Data Type 1) whose physical units are centimetres (code 3)."""
    for item in ds.get("SequenceOfUltrasoundRegions", None) or []:
        try:
            if int(item.get("RegionDataType", 1)) != 1:
                continue
            if int(item.get("PhysicalUnitsXDirection", 0)) != 3 or int(item.get("PhysicalUnitsYDirection", 0)) != 3:
                continue
            dx, dy = abs(float(item.PhysicalDeltaX)) * 10.0, abs(float(item.PhysicalDeltaY)) * 10.0
        except (AttributeError, TypeError, ValueError):
            continue
        if dx > 0 and dy > 0 and np.isfinite(dx) and np.isfinite(dy):
            return dy, dx
    return None
