"""Run once by the decode server at its start (``decode_server.serve``): decodes tiny images of every kind the server
accepts, so that each child forked for an upload starts with the decoders and their plugins already loaded (a cold
child spent up to 0.5 s loading them). Built in memory; nothing is read from disk or written."""

from __future__ import annotations

import io
import logging

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)


def dicom_of(arr: np.ndarray, syntax: str, frame: bytes | None = None) -> bytes:
    """A minimal 8-bit DICOM of ``arr`` in transfer syntax ``syntax``, compressed by pydicom, or carrying ``frame``,
    an already compressed frame of it (pydicom has no JPEG encoder: Pillow's JPEG is carried so)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    if frame is not None:
        ds.file_meta.TransferSyntaxUID, ds.PixelData = syntax, encapsulate([frame])
        ds["PixelData"].is_undefined_length = True
    else:
        ds.PixelData = arr.tobytes()
        if syntax != ExplicitVRLittleEndian:
            ds.compress(syntax)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def samples() -> list[bytes]:
    """One small file of each kind: PNG, JPEG, and DICOM uncompressed, JPEG baseline, JPEG 2000 and RLE."""
    from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

    arr = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    out = []
    for fmt in ("PNG", "JPEG"):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format=fmt)
        out.append(buf.getvalue())
    return out + [dicom_of(arr, ExplicitVRLittleEndian), dicom_of(arr, JPEGBaseline8Bit, out[1]),
                  dicom_of(arr, JPEG2000Lossless), dicom_of(arr, RLELossless)]


def warm() -> int:
    """Decode each sample once; how many decoded (a failure is logged, never raised: the server starts anyway)."""
    from ..confusable import prototypes
    from .decode import read_bytes

    done = 0
    try:
        prototypes()  # the confusables table the de-identification reads (0.3 s each child otherwise)
        for data in samples():
            read_bytes(data)
            done += 1
    except Exception as exc:  # noqa: BLE001 - warming is an optimisation only
        log.warning("Warming the decoders stopped (%s); uploads decode anyway, the first ones more slowly",
                    type(exc).__name__)
    return done
