"""De-identified copy of a DICOM file: the Basic Application Confidentiality Profile of DICOM PS3.15 Annex E.

The profile itself (Table E.1-1 from ``dicom-anonymizer``, every action at every nesting level, private, overlay
and curve groups) is applied by :mod:`.annex_e`; this module reads and writes the file around it. The pixel data
element is copied byte for byte and never decoded: from a file it is streamed (bounded memory whatever the size).

Burned-in text is not removed from the pixels, so ``PatientIdentityRemoved`` says ``YES`` only where none is known.
For ``BurnedInAnnotation=YES``, ``RecognizableVisualFeatures=YES``, or a modality that often burns text in (US, SC,
OT, XC, ES, GM, SM) or none at all, without a ``BurnedInAnnotation`` value, it says ``NO`` and a warning is returned
for the caller to show. No attribute value is ever logged or put in an error.
"""

from __future__ import annotations

import io as _io
import logging
import os
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from .annex_e import Scrubber, new_file_meta
from .dicom import _BURNED_IN_MODALITIES as BURNED_IN_MODALITIES  # pixels that often show burned-in details
from .dicom import looks_like_dicom
from .echoes import empty_echoes, identifiers

log = logging.getLogger(__name__)

METHOD = "PS3.15 Annex E Basic Profile (table 2026c); medimg_demo"  # LO: at most 64 characters
BURNED_IN_DEID_WARNING = (
    "The de-identified copy keeps the pixels as they are, and this image may show patient details burned into them "
    "(it declares burned-in text, or is ultrasound / secondary capture or names no modality, without saying). The "
    "copy is marked 'Patient Identity Removed: NO'; check the pixels before sharing it."
)
#: Pixel data elements (Float, Double Float, Pixel Data); elements larger than _DEFER stay in the source while read.
_PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)
_DEFER = 1024 * 1024
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})


@dataclass(frozen=True)
class DeidResult:
    """A de-identified copy and what the caller must tell the user about it (no attribute values)."""

    data: bytes
    identity_removed: bool  # what PatientIdentityRemoved says: False where burned-in text may remain
    warnings: tuple[str, ...] = ()
    has_pixels: bool = True  # False: the file held no pixel data (a header-only export, a JPIP reference)


def _burned_in(ds: Any) -> bool:
    """Whether the pixels may show identifying text or features (so identity is not claimed removed)."""
    burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    features = str(ds.get("RecognizableVisualFeatures", "") or "").strip().upper()
    modality = str(ds.get("Modality", "") or "").strip().upper()
    # no Modality (absent, or free text emptied by the profile): nothing says the pixels are free of text
    return burned == "YES" or features == "YES" or (burned != "NO" and (modality in BURNED_IN_MODALITIES or not modality))


def _header_start(raw: Any) -> int:
    """File offset where a (raw, as read) element's tag starts."""
    long_header = not raw.is_implicit_VR and str(raw.VR) in _LONG_VRS
    return int(raw.value_tell) - (12 if long_header else 8)


def _pixel_span(ds: Any, fp: Any, size: int) -> tuple[int, int] | None:
    """[start, end) of the pixel data element in the source, when it can be copied byte for byte: it was too large
    to be read (deferred) and the body is written in the encoding it was read in. ``None``: write it the usual way."""
    from pydicom.dataelem import RawDataElement
    from pydicom.uid import UID

    tags = [t for t in _PIXEL_TAGS if t in ds]
    raw = ds.get_item(tags[-1], keep_deferred=True) if tags else None
    if not isinstance(raw, RawDataElement) or raw.value is not None or raw.value_tell is None:
        return None
    syntax = ds.file_meta.get("TransferSyntaxUID") if getattr(ds, "file_meta", None) is not None else None
    if syntax is None or not UID(syntax).is_transfer_syntax or UID(syntax).is_deflated or ds.original_encoding != (UID(syntax).is_implicit_VR,
                                                                               UID(syntax).is_little_endian):
        return None
    start = _header_start(raw)
    if raw.length != 0xFFFFFFFF:  # defined length
        return start, int(raw.value_tell) + int(raw.length)
    # encapsulated: its fragments up to the sequence delimiter, walked item by item; never "up to the next element",
    # which would carry along the raw bytes of any element written out of order after it (a patient's name)
    return start, _encapsulated_end(fp, int(raw.value_tell), size)


def _refuse_cut_short(ds: Any, fp: Any, span: tuple[int, int] | None, size: int) -> None:
    """Refuse a file cut short: its last value running past the end of the file, native pixel data (integer or float)
    shorter than its rows, columns, samples, bits and frames say, or encapsulated fragments without their end. A
    truncated file had been copied with its length written anew as what was left (1,174 bytes of a 256x256 image),
    marked de-identified and reported written, while analysing it said it was damaged. A file with no pixel data
    at all passes (JPIP-referenced files and header-only exports have none; the command line says so). Under a
    transfer syntax pydicom does not know (a vendor's private one) only the file's end is checked."""
    from pydicom.pixels.utils import get_expected_length

    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    known = syntax is None or syntax.is_transfer_syntax  # pydicom raises on the properties of an unknown one
    deflated = syntax is not None and known and syntax.is_deflated  # positions are in the inflated stream
    keys = list(ds.keys())
    last = ds.get_item(keys[-1], keep_deferred=True) if keys else None
    tell, length = getattr(last, "value_tell", None), getattr(last, "length", None)
    if tell is not None and length is not None and length != 0xFFFFFFFF and tell + length > size and not deflated:
        raise InputError("The DICOM file is damaged: it ends inside an attribute (it was cut short); export the image "
                         "again.")  # pydicom keeps what was left of the last value
    tags = [t for t in _PIXEL_TAGS if t in ds]
    if not tags or not known:
        return
    raw = ds.get_item(tags[-1], keep_deferred=True)
    if getattr(raw, "length", 0) == 0xFFFFFFFF:  # encapsulated: its items up to their delimiter (refused without)
        if span is None and getattr(raw, "value_tell", None) is not None and not deflated:
            _encapsulated_end(fp, int(raw.value_tell), size)
        return
    if syntax is not None and syntax.is_compressed:
        return
    # copied from the source (deferred): what the file holds of its declared length; else what was read
    value = None if span is not None else ds[tags[-1]].value
    have = min(int(raw.length), max(0, size - int(raw.value_tell))) if span is not None else len(value or b"")
    try:
        need = int(get_expected_length(ds, "bytes"))
    except (AttributeError, KeyError, TypeError, ValueError):
        return  # no size to hold it to (the profile writes what is there)
    if have < need:
        raise InputError("The DICOM file is damaged: its pixel data is truncated or shorter than its header says "
                         f"({have} of {need} bytes); export the image again.")


#: Fragments of encapsulated pixel data a file may hold (a frame is one or a few; a cine loop some thousands).
MAX_FRAGMENTS = 100_000


def _encapsulated_end(fp: Any, offset: int, size: int) -> int:
    """File offset just past the sequence delimiter (FFFE,E0DD) that ends encapsulated pixel data whose first item
    starts at ``offset``: each item (FFFE,E000) is skipped by its length. Refused: a fragment that is not an item, a
    length past the end of the file, no delimiter, or over :data:`MAX_FRAGMENTS` items."""
    import struct

    here, pos = fp.tell(), offset
    try:
        for _ in range(MAX_FRAGMENTS + 1):
            fp.seek(pos)
            head = fp.read(8)
            if len(head) < 8:
                break
            group, element, length = struct.unpack("<HHI", head)
            pos += 8
            if (group, element) == (0xFFFE, 0xE0DD):
                return pos
            if (group, element) != (0xFFFE, 0xE000) or length == 0xFFFFFFFF or pos + length > size:
                break
            pos += length
    finally:
        fp.seek(here)
    raise InputError("This DICOM file's compressed pixel data is not laid out as DICOM requires (its fragments do not "
                     "end where they should), so it cannot be de-identified safely; export it again.")


def _deidentify(fp: Any, size: int) -> tuple[bytes, tuple[int, int] | None, bool, bool]:
    """(de-identified header or whole file, the pixel element's source span still to copy, identity removed, whether
    it holds pixel data)."""
    import pydicom
    from pydicom.dataset import Dataset

    from .dicom_guard import check_dicom_structure

    check_dicom_structure(fp, size)  # a bounded number of elements, and a bounded deflated body, before pydicom reads
    ds = pydicom.dcmread(fp, force=True, defer_size=_DEFER)
    if len(ds.keys()) == 0:
        raise InputError("The DICOM file holds no attributes; it may be damaged. Export it again.")
    span = _pixel_span(ds, fp, size)
    _refuse_cut_short(ds, fp, span, size)
    has_pixels = any(t in ds for t in _PIXEL_TAGS)
    if span is not None:  # the pixel element is copied from the source; nothing after it (padding, signatures) is
        first = [t for t in _PIXEL_TAGS if t in ds][-1]
        for tag in [t for t in ds.keys() if t >= first]:
            del ds[tag]
    found = identifiers(ds)  # the patient's name parts and IDs, looked for again in what the profile keeps
    scrubber = Scrubber()
    scrubber.scrub(ds)
    empty_echoes(ds, found)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:  # written anew: no source AE title, private or sender data
        ds.file_meta = meta = new_file_meta(meta, ds, scrubber)
    identity_removed = not _burned_in(ds)
    ds.PatientIdentityRemoved = "YES" if identity_removed else "NO"
    ds.DeidentificationMethod = METHOD
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "113100", "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = [code]
    if getattr(ds, "preamble", None) is not None:  # 128 free bytes before "DICM": written back as read, unless blanked
        ds.preamble = b"\x00" * 128  # (a name, or another format's header: DICOM/TIFF polyglots)
    out = _io.BytesIO()
    ds.save_as(out, enforce_file_format=meta is not None and "TransferSyntaxUID" in meta)
    return out.getvalue(), span, identity_removed, has_pixels


def _guarded(run: Any) -> Any:
    """Run a de-identification step; any parser failure becomes an InputError naming no value (and carrying no
    cause: a traceback printed later would quote it)."""
    import struct
    import zlib

    from pydicom.errors import BytesLengthException, InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's warnings can quote values
            return run()
    except InputError:
        raise
    except (InvalidDicomError, BytesLengthException, ValueError, TypeError, KeyError, IndexError, AttributeError,
            EOFError, OSError, OverflowError, NotImplementedError, RuntimeError, struct.error, zlib.error) as exc:
        # BytesLengthException (an Exception, not a ValueError) quotes up to 256 bytes of the element's value
        log.info("De-identification failed (%s)", type(exc).__name__)  # the type only: messages may quote values
        raise InputError("This DICOM file's header is damaged and it cannot be de-identified; export it again.") from None


def _result(data: bytes, identity_removed: bool, has_pixels: bool = True) -> DeidResult:
    return DeidResult(data, identity_removed, () if identity_removed else (BURNED_IN_DEID_WARNING,), has_pixels)


def deidentify_with_report(data: bytes) -> DeidResult:
    """Bytes of a DICOM file -> a de-identified copy (pixel data unchanged) and the warnings to show with it."""
    if not data or not looks_like_dicom(data):
        raise InputError("Only a DICOM file can be de-identified, and this file is not one (it has no DICOM "
                             "header; PNG and JPEG carry no DICOM attributes).")
    header, span, identity_removed, has_pixels = _guarded(lambda: _deidentify(_io.BytesIO(data), len(data)))
    if span is None:
        return _result(header, identity_removed, has_pixels)
    return _result(b"".join((header, memoryview(data)[span[0]:span[1]])), identity_removed, has_pixels)  # one copy


def deidentify_file(src: str | os.PathLike[str], out: str | os.PathLike[str]) -> DeidResult:
    """De-identify a file on disk into a new file, streaming the pixel data (memory stays small whatever the size);
    written whole or not at all, the original never touched. ``DeidResult.data`` holds the header only."""
    from .decode import MAX_BYTES

    src_p, out_p = Path(src), Path(out)
    tmp = out_p.with_name(f".{out_p.name}.{secrets.token_hex(4)}.partial")
    reading = True  # the side a failure without a file name is on (a read's EIO, a write's full disk)
    try:
        if out_p.resolve() == src_p.resolve():
            raise InputError("The copy must go to a new file: the original is never overwritten.")
        size = src_p.stat().st_size
        if size > MAX_BYTES:
            raise InputError(f"The file is over the limit of {MAX_BYTES / 1e6:.0f} MB (MEDIMG_MAX_UPLOAD_MB).")
        with open(src_p, "rb") as fp, open(tmp, "wb") as dst:
            if not looks_like_dicom(fp.read(132)):
                raise InputError("Only a DICOM file can be de-identified, and this file is not one (it has no DICOM "
                             "header; PNG and JPEG carry no DICOM attributes).")
            fp.seek(0)
            header, span, identity_removed, has_pixels = _guarded(lambda: _deidentify(fp, size))
            reading = False
            dst.write(header)
            if span is not None:
                fp.seek(span[0])
                left = span[1] - span[0]
                while left > 0:
                    reading = True
                    chunk = fp.read(min(left, 1 << 20))
                    reading = False
                    if not chunk:
                        break
                    dst.write(chunk)
                    left -= len(chunk)
        os.replace(tmp, out_p)
    except OSError as exc:  # which side failed: the file the system names, else the step that was running
        reason = exc.strerror or type(exc).__name__
        if Path(exc.filename) == src_p if exc.filename is not None else reading:
            raise InputError(f"The file could not be read ({reason}).") from exc
        raise InputError(f"The copy could not be written in {out_p.parent} ({reason}); check the folder "
                         "(and the space on its disk).") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return _result(header, identity_removed, has_pixels)


def deidentify(data: bytes) -> bytes:
    """Bytes of a DICOM file -> bytes of a de-identified copy (see :func:`deidentify_with_report` for warnings)."""
    return deidentify_with_report(data).data
