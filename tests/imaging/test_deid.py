"""De-identification against PS3.15 Table E.1-1, generated from dicom-anonymizer's own table.

A unique marker is planted in every attribute of the table (at the top level, inside a sequence item and inside an
item two sequences deep), plus private groups, an overlay and a curve group; after de-identification no marker may
survive anywhere in the bytes or the data set, and each attribute must show the action the profile gives it.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import config, dcmread
from pydicom.datadict import dictionary_has_tag, dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage
from pydicom.valuerep import validate_value

from conftest import dicom_bytes, gradient, png_bytes
from medimg_demo.errors import InputError
from medimg_demo.imaging.annex_e import APPLIED, TABLE_EDITION
from medimg_demo.imaging.deid import deidentify, deidentify_with_report

SECRETS = ("Doe", "Jane", "PID-998877", "19600101", "Hidden Road", "Secretia")
UID_ROOT = "1.2.3.999."  # planted UIDs; generated ones (2.25.<digits>) never contain it
NEST = ("SharedFunctionalGroupsSequence", "PlanePositionSequence")  # not in the table: kept, profile applied inside


def _table() -> dict[int, str]:
    """tag -> action code, straight from the library (independent of the code under test)."""
    from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector

    codes = {"D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D", "X_Z_TAGS": "X/Z",
             "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*"}
    db = dicom_anonymization_database_selector(TABLE_EDITION)
    out: dict[int, str] = {}
    for cat, code in codes.items():
        for entry in db[cat]:
            if len(entry) == 2:
                out[(entry[0] << 16) | entry[1]] = code
    return out


TABLE = _table()


@dataclass
class Planted:
    markers: list[Any]  # every value planted (str, bytes or int)

    def text(self) -> list[str]:
        return [m for m in self.markers if isinstance(m, str)]


def _vr(tag: int) -> str:
    """The tag's VR in pydicom's dictionary; LO for attributes newer than it (pydicom can still write them)."""
    if not dictionary_has_tag(tag):
        return "LO"
    return dictionary_VR(tag).split(" or ")[0]


def _marker(vr: str, n: int, planted: Planted) -> Any:
    """A value unique to (attribute, level), valid for the VR."""
    if vr == "PN":
        value: Any = f"MKR{n:05d}Q^Secret"
    elif vr == "DA":
        value = (dt.date(1901, 1, 1) + dt.timedelta(days=n)).strftime("%Y%m%d")
    elif vr == "TM":
        value = f"235959.{900000 + n:06d}"
    elif vr == "DT":
        value = f"19020304050607.{900000 + n:06d}"
    elif vr == "UI":
        value = f"{UID_ROOT}{n}.7"
    elif vr == "AS":
        value = f"{n % 1000:03d}W"
    elif vr == "DS":
        value = f"{90000 + n}.25"
    elif vr == "IS":
        value = f"{90000 + n}"
    elif vr in ("US", "SS", "UL", "SL"):
        value = 40000 + n
    elif vr in ("FL", "FD"):
        value = 40000.5 + n
    elif vr in ("OB", "OW", "UN"):
        value = f"MKR{n:05d}Q".encode() + b"\x00"
    elif vr == "UR":
        value = f"http://MKR{n:05d}Q.invalid"
    else:  # AE, CS, LO, LT, SH, ST, UC, UT
        value = f"MKR{n:05d}Q"
    planted.markers.append(value)
    return value


def _item_for_sequence(n: int, sop_uid: str, planted: Planted) -> Dataset:
    """The item planted in each sequence of the table: a person name (D), a referenced instance UID (U)."""
    item = Dataset()
    item.PersonName = _marker("PN", n, planted)
    item.ReferencedSOPClassUID = SecondaryCaptureImageStorage
    item.ReferencedSOPInstanceUID = sop_uid  # the file's own SOP Instance UID: must map to the same new UID
    return item


def _plant_all(ds: Dataset, level: int, sop_uid: str, planted: Planted) -> int:
    """Every attribute of the table, with a marker; returns how many were planted."""
    count = 0
    for tag in sorted(TABLE):
        if (tag >> 16) in (0x0000, 0x0002):
            continue  # command set elements cannot be in a file; file meta: planted separately
        vr = _vr(tag)
        n = level * 10000 + count
        if tag == 0x00080018:
            value: Any = sop_uid  # SOP Instance UID: the same at every level (consistency)
        elif vr == "SQ":
            value = Sequence([_item_for_sequence(n, sop_uid, planted)])
        else:
            value = _marker(vr, n, planted)
        ds.add(DataElement(Tag(tag), vr, value))
        count += 1
    # Private groups (with and without a known creator), an overlay and a curve group.
    block = ds.private_block(0x0011, "MEDIMG TEST", create=True)
    block.add_new(0x01, "LO", _marker("LO", level * 10000 + 9001, planted))
    block.add_new(0x02, "PN", _marker("PN", level * 10000 + 9002, planted))
    ds.add(DataElement(Tag(0x0009, 0x1010), "UN", _marker("UN", level * 10000 + 9003, planted)))
    ds.add(DataElement(Tag(0x6000, 0x0010), "US", 8))
    ds.add(DataElement(Tag(0x6000, 0x0011), "US", 8))
    ds.add(DataElement(Tag(0x6000, 0x0022), "LO", _marker("LO", level * 10000 + 9004, planted)))
    ds.add(DataElement(Tag(0x6000, 0x3000), "OW", _marker("OW", level * 10000 + 9005, planted)))
    ds.add(DataElement(Tag(0x6000, 0x4000), "LT", _marker("LT", level * 10000 + 9006, planted)))
    ds.add(DataElement(Tag(0x5000, 0x2500), "LO", _marker("LO", level * 10000 + 9007, planted)))
    ds.add(DataElement(Tag(0x5000, 0x3000), "OB", _marker("OB", level * 10000 + 9008, planted)))
    return count


def _marked_dicom(modality: str = "CT") -> tuple[bytes, Planted, int, str]:
    planted = Planted([])
    sop_uid = f"{UID_ROOT}424242.1"
    planted.markers.append(sop_uid)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.SourceApplicationEntityTitle = _marker("AE", 99999, planted)
    ds = Dataset()
    ds.file_meta = meta
    n_top = _plant_all(ds, 0, sop_uid, planted)
    deep = Dataset()
    _plant_all(deep, 2, sop_uid, planted)
    shallow = Dataset()
    _plant_all(shallow, 1, sop_uid, planted)
    setattr(shallow, NEST[1], Sequence([deep]))
    setattr(ds, NEST[0], Sequence([shallow]))
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.Modality = modality
    ds.Rows, ds.Columns = 64, 64
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    # Grey levels under 0x28: the pixel bytes can never spell a text or digit marker.
    ds.PixelData = (gradient(64, 64) * 39).astype(np.uint8).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue(), planted, n_top, sop_uid


def _walk_all(ds: Dataset):  # noqa: ANN202
    """Every element of the data set, its file meta and every nested item."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        yield from meta
    stack = [ds]
    while stack:
        current = stack.pop()
        for elem in current:
            yield elem
            if elem.VR == "SQ":
                stack.extend(elem.value)


def _values(elem: DataElement) -> list[Any]:
    v = elem.value
    if v is None or elem.VR == "SQ":
        return []
    return list(v) if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue" else [v]


@pytest.fixture(scope="module")
def marked() -> dict[str, Any]:
    data, planted, n_top, sop_uid = _marked_dicom()
    result = deidentify_with_report(data)
    return {"data": data, "planted": planted, "n_top": n_top, "sop_uid": sop_uid, "result": result,
            "out": dcmread(io.BytesIO(result.data)), "original": dcmread(io.BytesIO(data))}


def test_no_marker_survives_in_bytes_or_data_set(marked: dict[str, Any]) -> None:
    out, planted = marked["out"], marked["planted"]
    assert marked["n_top"] == len([t for t in TABLE if (t >> 16) not in (0, 2)]) > 600  # the whole table was planted
    # Bytes: every text marker (names, text, dates, times, decimal numbers, planted UIDs, binary strings). The new
    # UIDs are cut out first: a random 2.25.<digits> UID could by chance contain an 8-digit date marker.
    blob = marked["result"].data
    new_uids = {str(v) for e in _walk_all(out) if e.VR == "UI" for v in _values(e)}
    for uid in sorted(new_uids, key=len, reverse=True):
        assert UID_ROOT not in uid
        blob = blob.replace(uid.encode(), b"")
    searchable = [m.encode() if isinstance(m, str) else m for m in planted.markers if isinstance(m, (str, bytes))]
    survivors = [m for m in searchable if m in blob]
    assert survivors == [], f"{len(survivors)} markers survive in the bytes"
    assert UID_ROOT.encode() not in marked["result"].data
    # Data set: every value of every element at every level, numbers included.
    text_markers = planted.text()
    other_markers = {m for m in planted.markers if not isinstance(m, str)}
    found = []
    for elem in _walk_all(out):
        for v in _values(elem):
            if isinstance(v, (int, float, bytes)) and v in other_markers:
                found.append(elem.tag)
            elif isinstance(v, bytes):
                found.extend(elem.tag for m in other_markers if isinstance(m, bytes) and m in v)
            elif elem.VR == "UI":  # a new random 2.25.<digits> UID can contain a numeric marker by chance
                if UID_ROOT in str(v):
                    found.append(elem.tag)
            elif any(m in str(v) for m in text_markers if len(m) > 4):
                found.append(elem.tag)
    assert found == [], f"{len(found)} elements still hold a marker"
    assert not any(e.tag.is_private for e in _walk_all(out))
    assert not any(0x5000 <= e.tag.group <= 0x50FF or 0x6000 <= e.tag.group <= 0x60FF for e in _walk_all(out))


def _level_datasets(out: Dataset) -> list[Dataset]:
    shallow = getattr(out, NEST[0])[0]
    return [out, shallow, getattr(shallow, NEST[1])[0]]


@pytest.mark.parametrize("level", [0, 1, 2], ids=["top", "in-sequence", "two-deep"])
def test_every_attribute_gets_its_action_at_every_level(marked: dict[str, Any], level: int) -> None:
    original = _level_datasets(marked["original"])[level]
    ds = _level_datasets(marked["out"])[level]
    checked = {"D": 0, "Z": 0, "X": 0, "U": 0, "U*": 0}
    for tag, code in TABLE.items():
        if (tag >> 16) in (0x0000, 0x0002):
            continue
        applied = APPLIED[code]
        vr = _vr(tag)
        if applied == "X":
            assert tag not in ds, f"{Tag(tag)} ({code}) not removed"
        elif applied == "Z":
            assert tag in ds and ds[tag].is_empty, f"{Tag(tag)} ({code}) not emptied"
            assert ds[tag].VR == vr
        elif applied == "D":
            elem = ds[tag]
            assert elem.VR == vr and not elem.is_empty, f"{Tag(tag)} ({code}) has no dummy"
            if vr == "SQ":
                assert all(len(item) > 0 for item in elem.value)
            else:
                validate_value(vr, elem.value, config.RAISE)  # a valid value of that VR
                assert elem.value != original[tag].value
        elif applied == "U":
            new, old = ds[tag].value, original[tag].value
            assert vr == "UI" and UID(new).is_valid and new != old, f"{Tag(tag)} ({code}) UID not replaced"
        else:  # U*: the sequence stays, its instance UIDs replaced consistently
            item = ds[tag].value[0]
            assert item.ReferencedSOPInstanceUID == marked["out"].SOPInstanceUID
            assert item.ReferencedSOPClassUID == SecondaryCaptureImageStorage
        checked[applied] += 1
    assert checked["D"] > 100 and checked["Z"] > 40 and checked["X"] > 400 and checked["U"] > 50 and checked["U*"] == 2


def test_uids_replaced_consistently_within_the_file(marked: dict[str, Any]) -> None:
    out = marked["out"]
    new = out.SOPInstanceUID
    assert new != marked["sop_uid"] and UID(new).is_valid
    assert out.file_meta.MediaStorageSOPInstanceUID == new
    levels = _level_datasets(out)
    assert [d.SOPInstanceUID for d in levels] == [new] * 3
    # Every planted UID tag maps to one new UID wherever the same old UID appeared (here: the file's own).
    own = {d.ReferencedSOPInstanceUID for d in levels}  # the attribute itself, planted with its own marker
    refs = [e.value for e in _walk_all(out) if e.keyword == "ReferencedSOPInstanceUID" and e.value not in own]
    assert len(refs) > 20 and set(refs) == {new}  # items of the kept (D, X/D, X/Z/D, X/Z/U*) sequences
    assert len(own) == 3 and new not in own
    # Distinct old UIDs get distinct new ones.
    study = [d.StudyInstanceUID for d in levels]
    assert len(set(study)) == 3 and new not in study
    assert out.SOPClassUID == SecondaryCaptureImageStorage  # class UIDs identify no one: kept


def test_pixels_unchanged_and_identity_marked(marked: dict[str, Any]) -> None:
    out, original = marked["out"], marked["original"]
    assert out.PixelData == original.PixelData
    np.testing.assert_array_equal(out.pixel_array, original.pixel_array)
    assert marked["result"].identity_removed and marked["result"].warnings == ()
    assert out.PatientIdentityRemoved == "YES" and "Annex E" in out.DeidentificationMethod
    assert out.DeidentificationMethodCodeSequence[0].CodeValue == "113100"


@pytest.mark.parametrize(
    ("modality", "burned", "claims"),
    [("CT", None, True), ("CT", "YES", False), ("MR", "NO", True), ("US", None, False), ("SC", None, False),
     ("US", "NO", True), ("OT", "YES", False)],
)
def test_identity_removed_only_where_no_burned_in_text_is_known(modality: str, burned: str | None, claims: bool) -> None:
    data = dicom_bytes((gradient() * 255).astype(np.uint8), modality=modality)
    if burned is not None:
        ds = dcmread(io.BytesIO(data))
        ds.BurnedInAnnotation = burned
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        data = buf.getvalue()
    result = deidentify_with_report(data)
    out = dcmread(io.BytesIO(result.data))
    assert out.PatientIdentityRemoved == ("YES" if claims else "NO")
    assert result.identity_removed is claims
    assert (result.warnings == ()) is claims
    if not claims:
        assert "burned" in result.warnings[0]
    assert deidentify(data)[:132] == result.data[:132]  # the bytes-only API gives the same file


def test_recognisable_features_are_not_claimed_removed() -> None:
    ds = dcmread(io.BytesIO(dicom_bytes((gradient() * 255).astype(np.uint8), modality="MR")))
    ds.RecognizableVisualFeatures = "YES"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    result = deidentify_with_report(buf.getvalue())
    assert not result.identity_removed and dcmread(io.BytesIO(result.data)).PatientIdentityRemoved == "NO"


@pytest.mark.parametrize("data", [b"", png_bytes((gradient() * 255).astype(np.uint8)), b"not a dicom file" * 20])
def test_non_dicom_is_refused(data: bytes) -> None:
    with pytest.raises(InputError, match="DICOM"):
        deidentify(data)


def test_cli_deidentify(tmp_path, caplog, capsys) -> None:
    from medimg_demo.cli import main

    src = tmp_path / "Doe_Jane_PID-998877.dcm"
    src.write_bytes(dicom_bytes((gradient(64, 64) * 3000).astype(np.uint16), modality="US"))
    out = tmp_path / "copy.dcm"
    caplog.set_level(logging.DEBUG)
    assert main(["deidentify", str(src), "--out", str(out)]) == 0
    copy = out.read_bytes()
    for secret in SECRETS:
        assert secret.encode() not in copy
    ds = dcmread(out)
    assert ds.PatientIdentityRemoved == "NO"  # ultrasound without BurnedInAnnotation: not claimed
    printed = capsys.readouterr()
    text = printed.out + printed.err + caplog.text
    assert "burned" in caplog.text
    for secret in SECRETS:
        assert secret not in text

    png = tmp_path / "image.png"
    png.write_bytes(png_bytes((gradient() * 255).astype(np.uint8)))
    assert main(["deidentify", str(png), "--out", str(tmp_path / "x.dcm")]) == 2
    assert "DICOM" in caplog.text and not (tmp_path / "x.dcm").exists()
    assert main(["deidentify", str(src), "--out", str(src)]) == 2  # never overwrite the original in place


def _large_dicom(kind: str) -> bytes:
    """Over 1 MB of pixel data (so it is copied byte for byte, never parsed), with PHI and a trailing padding."""
    from pydicom.uid import ImplicitVRLittleEndian, RLELossless

    rng = np.random.default_rng(7)
    frames = rng.integers(0, 4000, (4, 640, 600)).astype(np.uint16)
    ds = dcmread(io.BytesIO(dicom_bytes(frames[0])))
    ds.NumberOfFrames = len(frames)
    if kind == "rle":
        ds.compress(RLELossless, frames)
    else:
        ds.PixelData = frames.tobytes()
    ds.add(DataElement(Tag(0xFFFC, 0xFFFC), "OB", b"Doe^Jane" * 4))
    buf = io.BytesIO()
    if kind == "implicit":
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(buf, enforce_file_format=True, implicit_vr=True, little_endian=True)
    else:
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["explicit", "implicit", "rle"])
def test_large_pixel_data_is_copied_byte_for_byte_from_bytes_and_files(kind: str, tmp_path, monkeypatch) -> None:
    from medimg_demo.imaging import deid

    data = _large_dicom(kind)
    spans: list[Any] = []
    real = deid._pixel_span
    monkeypatch.setattr(deid, "_pixel_span", lambda *a: spans.append(real(*a)) or spans[-1])
    src, dst = tmp_path / "in.dcm", tmp_path / "out.dcm"
    src.write_bytes(data)
    from_file = deid.deidentify_file(src, dst)
    assert len(spans) == 1 and spans[0] is not None  # streamed, not parsed and rewritten
    original = dcmread(io.BytesIO(data))
    for out_bytes in (deidentify(data), dst.read_bytes()):
        out = dcmread(io.BytesIO(out_bytes))
        assert out.PixelData == original.PixelData
        np.testing.assert_array_equal(out.pixel_array, original.pixel_array)
        for secret in SECRETS:
            assert secret.encode() not in out_bytes
        assert "DataSetTrailingPadding" not in out and out.PatientIdentityRemoved == "YES"
        assert out.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert from_file.identity_removed and src.read_bytes() == data


@pytest.mark.parametrize("kind", ["small", "explicit"])
def test_the_preamble_is_blanked(kind: str, tmp_path) -> None:
    """The 128 bytes before "DICM" are free for any use (a name, a TIFF header: DICOM/TIFF polyglots); pydicom
    writes them back as read, so every copy marked de-identified carried them: now zeros, in both write paths."""
    mark = b"PATIENT DOE^JANE PID998877".ljust(128, b"\x01")
    data = dicom_bytes((gradient() * 1000).astype(np.uint16)) if kind == "small" else _large_dicom(kind)
    assert data[128:132] == b"DICM"
    marked = mark + data[128:]
    src, dst = tmp_path / "in.dcm", tmp_path / "out.dcm"
    src.write_bytes(marked)
    from medimg_demo.imaging.deid import deidentify_file

    deidentify_file(src, dst)
    for out in (deidentify(marked), dst.read_bytes()):
        assert out[:128] == b"\x00" * 128 and out[128:132] == b"DICM" and b"DOE^JANE" not in out


def _both_copies(ds: Dataset, tmp_path: Path) -> list[bytes]:
    """The de-identified copy of ``ds`` by both write paths: from bytes, and from a file (pixel data streamed)."""
    from medimg_demo.imaging.deid import deidentify_file

    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    src, dst = tmp_path / "in.dcm", tmp_path / "out.dcm"
    src.write_bytes(buf.getvalue())
    deidentify_file(src, dst)
    return [deidentify(buf.getvalue()), dst.read_bytes()]


@pytest.mark.parametrize("kind", ["small", "explicit"])
def test_free_text_in_a_code_string_is_not_written(kind: str, tmp_path) -> None:
    """The profile keeps Modality, Body Part Examined and other code strings; a forged file put a name in them and
    both write paths (bytes, and a file with its pixel data streamed) wrote it into the copy marked de-identified
    (found by a live hostile run). Free text is now written empty; real codes are kept."""
    text = "Scan of DOE JANE PID998877"
    ds = dcmread(io.BytesIO(dicom_bytes((gradient() * 1000).astype(np.uint16)) if kind == "small"
                            else _large_dicom(kind)))
    ds.Modality, ds.BodyPartExamined, ds.PatientPosition = text, text, "hfs"
    ds.ImageType = ["ORIGINAL", "PRIMARY", text]
    ds.ScanningSequence = "SE\nDOE"  # a line break: not a code
    item = Dataset()
    item.ViewPosition = f"{text}\nsecond line"  # inside a kept sequence
    ds.add(DataElement(Tag(0x0008, 0x1140), "SQ", Sequence([item])))  # Referenced Image Sequence (X/Z/U*)
    kept = Dataset()
    kept.BodyPartExamined, kept.Laterality = "L-SPINE", "R"
    ds.add(DataElement(Tag(0x0008, 0x2218), "SQ", Sequence([kept])))  # Anatomic Region Sequence: not in the table
    for out in _both_copies(ds, tmp_path):
        for word in (b"DOE", b"JANE", b"PID998877", b"Scan of"):
            assert word not in out.upper(), word
        back = dcmread(io.BytesIO(out))
        assert back.Modality == "" and back.BodyPartExamined == "" and back.PatientPosition == "HFS"
        assert back.get("ImageType", "") == "" and back.get("ScanningSequence", "") == ""
        assert back.AnatomicRegionSequence[0].BodyPartExamined == "L-SPINE"
        assert back.AnatomicRegionSequence[0].Laterality == "R"
        assert back.PatientIdentityRemoved == "NO"  # no modality: nothing says the pixels are free of text


@pytest.mark.parametrize("kind", ["small", "explicit"])
def test_free_text_under_another_vr_or_in_a_uid_is_not_written(kind: str, tmp_path) -> None:
    """A second read: the code-string rule went by the VR written in the file, so a Modality written as LO text, a
    sequence written as OB bytes, or an attribute DICOM does not define was copied as it was; a class UID holding
    text was kept (class UIDs are kept). Now such elements are removed and such UIDs replaced."""
    text = "Scan of DOE JANE PID998877"
    ds = dcmread(io.BytesIO(dicom_bytes((gradient() * 1000).astype(np.uint16)) if kind == "small"
                            else _large_dicom(kind)))
    ds.add(DataElement(Tag(0x0008, 0x0060), "LO", text))  # Modality, as LO
    ds.add(DataElement(Tag(0x0008, 0x1140), "OB", text.encode() * 2))  # Referenced Image Sequence, as OB
    ds.add(DataElement(Tag(0x0018, 0x0015), "UT", text))  # Body Part Examined, as UT
    ds.add(DataElement(Tag(0x0041, 0x0010), "LO", text))  # a public group DICOM does not define
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008." + text  # "standard", not a UID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    assert buf.getvalue().count(b"PID998877") >= 5
    src, dst = tmp_path / "in.dcm", tmp_path / "out.dcm"
    src.write_bytes(buf.getvalue())
    from medimg_demo.imaging.deid import deidentify_file

    deidentify_file(src, dst)
    for out in (deidentify(buf.getvalue()), dst.read_bytes()):
        for word in (b"DOE", b"JANE", b"PID998877"):
            assert word not in out.upper(), word
        back = dcmread(io.BytesIO(out))
        assert "Modality" not in back and "ReferencedImageSequence" not in back and Tag(0x0041, 0x0010) not in back
        assert back.PatientIdentityRemoved == "NO"  # no modality: nothing says the pixels are free of text
        assert back.pixel_array.shape == ds.pixel_array.shape  # still an image


@pytest.mark.parametrize("kind", ["small", "explicit"])
def test_the_patients_name_and_ids_echoed_in_kept_attributes_are_not_written(kind: str, tmp_path) -> None:
    """A radiologist's review downloaded the copy of a file whose kept attributes (Manufacturer, Model Name, Body Part,
    Patient Position, one Image Type value) spelled the patient's name as codes ("SMITHJOHN"): written as they were,
    under PatientIdentityRemoved YES. The name parts and IDs the file gives are now looked for in every kept text
    value, at every level; other kept values stay."""
    ds = dcmread(io.BytesIO(dicom_bytes((gradient() * 1000).astype(np.uint16)) if kind == "small"
                            else _large_dicom(kind)))
    ds.PatientName, ds.PatientID, ds.AccessionNumber = "SMITH^JOHN", "MRN12345", "ACC-998877"
    ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = "CT", "JOHNSMITH MFR", "SMITHJOHN"
    ds.BodyPartExamined, ds.PatientPosition, ds.ImageType = "SMITHJOHN", "HFS", ["DERIVED", "SMITH"]
    kept = Dataset()
    kept.BodyPartExamined, kept.Laterality, kept.CodeMeaning = "CHEST", "R", "report 998877 reviewed"
    ds.add(DataElement(Tag(0x0008, 0x2218), "SQ", Sequence([kept])))  # Anatomic Region Sequence: kept
    for out in _both_copies(ds, tmp_path):
        header = out[:out.find(b"\xe0\x7f\x10\x00")]  # before the pixel data, whose bytes are anything
        for word in (b"SMITH", b"JOHN", b"MRN12345"):
            assert word not in header.upper(), word
        back = dcmread(io.BytesIO(out))  # the digits, in any value but the new random UIDs (which hold them by chance
        values = [str(e.value) for e in back.iterall() if e.VR not in ("UI", "SQ", "OB", "OW")]  # about 1 in 2,500)
        assert not [v for v in values if "998877" in v]
        assert back.Manufacturer == "" and back.ManufacturerModelName == "" and back.BodyPartExamined == ""
        assert back.get("ImageType", "") == "" and back.PatientPosition == "HFS" and back.Modality == "CT"
        region = back.AnatomicRegionSequence[0]
        assert region.BodyPartExamined == "CHEST" and region.Laterality == "R" and region.CodeMeaning == ""


def test_an_echoed_name_is_found_without_its_accents_and_in_other_alphabets(tmp_path) -> None:
    """"Müller" kept as "MULLER MED" and a kanji name part kept in a model name: found too (letters compared without
    accents, case folded; a name part of two characters in an alphabet other than the Latin one)."""
    ds = dcmread(io.BytesIO(dicom_bytes((gradient() * 1000).astype(np.uint16))))
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Jürgen=山田^太郎"
    ds.Modality, ds.Manufacturer, ds.ManufacturerModelName, ds.BodyPartExamined = "CT", "MULLER MED", "山田 X1", "CHEST"
    for out in _both_copies(ds, tmp_path):
        back = dcmread(io.BytesIO(out))
        assert back.Manufacturer == "" and back.ManufacturerModelName == "" and back.BodyPartExamined == "CHEST"


@pytest.mark.parametrize("name, ident, born, echoes", [
    ("SMITH-JONES^MARYANNE", "", "", {"Manufacturer": "SMITH", "ManufacturerModelName": "JONES"}),  # a hyphen
    ("SMITH_JOHN", "", "", {"Manufacturer": "SMITH", "SoftwareVersions": "JOHN"}),  # one word with a separator
    ("Sørensen^Søren", "", "", {"Manufacturer": "SORENSEN SOREN"}),  # spelt in ASCII
    ("Wałęsa^Łukasz", "", "", {"Manufacturer": "WALESA LUKASZ"}),
    ("Müller^Jürgen", "", "", {"Manufacturer": "MUELLER JUERGEN"}),
    ("WU^LI", "", "", {"Manufacturer": "WU LI", "ManufacturerModelName": "WULI"}),  # two-letter parts, run together
    ("DOE^JANE^Q", "", "", {"BodyPartExamined": "DOEJANE"}),  # without the middle name
    ("", "00123456", "", {"Manufacturer": "MRN 123456", "SeriesNumber": "123456"}),  # leading zeros; a number
    ("", "", "19800317", {"Manufacturer": "DOB 17.03.1980", "ManufacturerModelName": "03/17/1980"}),
    ("SM\u0406TH^JOHN", "", "", {"Manufacturer": "SMITH MED"}),  # a Cyrillic I in the name, a Latin one kept
    ("SMITH^JOHN", "", "", {"Manufacturer": "\u0405MITH MED", "ManufacturerModelName": "J\u041eHN"}),  # and back
    ("SMITH^JOHN", "", "", {"Manufacturer": "SMlTH", "InstitutionalDepartmentName": "JOHN"}),  # a small L for the I
])
def test_echoes_split_spelt_or_reformatted_are_found_too(name: str, ident: str, born: str, echoes: dict,
                                                         tmp_path) -> None:
    """A hostile review of the first version: a hyphenated name, ASCII spellings of accented names, two-letter
    names, an ID without its leading zeros or as a series number, and a birth date written another way survived."""
    ds = dcmread(io.BytesIO(dicom_bytes((gradient() * 1000).astype(np.uint16))))
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.Modality = name, ident, born, "CT"
    for keyword, value in echoes.items():
        setattr(ds, keyword, value)
    for out in _both_copies(ds, tmp_path):
        back = dcmread(io.BytesIO(out))
        assert all(back.get(k) in ("", None) for k in echoes), {k: back.get(k) for k in echoes}


@pytest.mark.parametrize("name", ["Mary^Ina", "Rome^Ono", "Phil^Med", "Elvis^Che", "ISO^Ir"])
def test_a_common_name_does_not_empty_real_codes(name: str, tmp_path) -> None:
    """Matching names as whole words: the first version emptied Image Type for Mary ("PRIMARY"), the photometric
    interpretation for Rome ("MONOCHROME2"), the manufacturer for Phil ("Philips") and the character set for ISO."""
    ds = dcmread(io.BytesIO(dicom_bytes((gradient() * 1000).astype(np.uint16))))
    ds.SpecificCharacterSet, ds.PatientName, ds.Modality = "ISO_IR 100", name, "CT"
    ds.ImageType, ds.Manufacturer = ["ORIGINAL", "PRIMARY", "AXIAL"], "Philips Medical Systems"
    ds.BodyPartExamined = "PELVIS" if "Elvis" in name else "CHEST"
    for out in _both_copies(ds, tmp_path):
        back = dcmread(io.BytesIO(out))
        assert list(back.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"] and back.Manufacturer == "Philips Medical Systems"
        assert back.PhotometricInterpretation == "MONOCHROME2" and back.SpecificCharacterSet == "ISO_IR 100"
        assert back.BodyPartExamined in ("PELVIS", "CHEST")


@pytest.mark.parametrize("side", [64, 1024])  # read whole, and copied from the file (over 1 MB: deferred)
def test_a_truncated_file_is_refused_not_copied_short_and_called_de_identified(side: int, tmp_path) -> None:
    """A truncated CT had been copied with its pixel data's length written anew as what was left (1,174 of 65,536
    bytes), marked de-identified and reported written (exit 0), where predict called it damaged."""
    from medimg_demo.cli import main
    from medimg_demo.imaging.deid import deidentify, deidentify_file

    data = dicom_bytes((gradient(side, side) * 1000).astype(np.uint16))
    src = tmp_path / "trunc.dcm"
    src.write_bytes(data[:-3000])
    with pytest.raises(InputError, match="The DICOM file is damaged: it ends inside an attribute"):
        deidentify(src.read_bytes())
    ds = dcmread(io.BytesIO(data))
    ds.PixelData = ds.PixelData[:-3000]  # cut, its length written anew to match: as the old copies were
    short = io.BytesIO()
    ds.save_as(short, enforce_file_format=True)
    need = side * side * 2
    with pytest.raises(InputError, match=rf"pixel data is truncated or shorter .* \({need - 3000} of {need} bytes\)"):
        deidentify(short.getvalue())
    with pytest.raises(InputError, match="export the image again"):
        deidentify_file(src, tmp_path / "copy.dcm")
    assert main(["deidentify", str(src), "--out", str(tmp_path / "copy.dcm")]) == 2
    assert not (tmp_path / "copy.dcm").exists() and list(tmp_path.iterdir()) == [src]
    assert len(deidentify(data)) > 0  # whole, it is copied


def test_files_cut_elsewhere_are_refused_too(tmp_path) -> None:
    """The re-test of that fix: cut early in the pixel value, inside compressed fragments, a short float pixel
    element, and a Deflated file cut in half (zlib's traceback)."""
    import zlib

    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from medimg_demo.imaging.deid import deidentify

    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    j2k = Path(get_testdata_file("JPEG2000.dcm")).read_bytes()
    ds = dcmread(io.BytesIO(dicom_bytes((gradient(64, 64) * 1000).astype(np.uint16))))
    del ds.PixelData, ds.PixelRepresentation, ds.HighBit, ds.BitsStored
    ds.BitsAllocated, ds.FloatPixelData = 32, b"\x00\x00\x80\x3f" * 100  # 400 of 16,384 bytes
    floats = io.BytesIO()
    ds.save_as(floats, enforce_file_format=True)
    ds = dcmread(io.BytesIO(dicom_bytes((gradient(64, 64) * 1000).astype(np.uint16))))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    deflated = io.BytesIO()
    ds.save_as(deflated, enforce_file_format=True)
    cut = {"pixel value": ct[:ct.rfind(b"\xe0\x7f\x10\x00") + 200], "fragments": j2k[:-2000],
           "float pixels": floats.getvalue(), "deflated": deflated.getvalue()[:len(deflated.getvalue()) // 2]}
    for what, data in cut.items():
        with pytest.raises(InputError, match="damaged"):
            deidentify(data)
    assert len(deidentify(deflated.getvalue())) > 0 and len(deidentify(j2k)) > 0 and zlib  # whole, they are copied


def test_numbers_are_not_taken_for_a_name_drawn_alike(tmp_path) -> None:
    """Drawn, 100 is "loo" and 101 "lol": with the look-alike matching, a patient named Loo had emptied kVp 100, the
    series number 100 and "CHEST 100 KV" (second read of the change). Numbers are compared as written."""
    ds = dcmread(io.BytesIO(dicom_bytes((gradient() * 1000).astype(np.uint16))))
    ds.PatientName, ds.Modality, ds.ManufacturerModelName = "LOO^WEI MING", "CT", "CT 100 KV"
    ds.KVP, ds.SeriesNumber, ds.InstanceNumber = "100", "100", "101"
    for out in _both_copies(ds, tmp_path):
        back = dcmread(io.BytesIO(out))
        assert (back.KVP, back.SeriesNumber, back.InstanceNumber) == (100, 100, 101)
        assert back.ManufacturerModelName == "CT 100 KV"


def test_files_without_pixels_or_with_a_private_syntax_are_still_copied(tmp_path, caplog) -> None:
    """The cut-short checks had refused a header-only file (JPIP-referenced files have no pixel data by the
    standard) and any file under a transfer syntax pydicom does not know (an old GE private one): copied as before;
    the command line says when a copy holds no pixels."""
    from medimg_demo.cli import main
    from medimg_demo.imaging.deid import deidentify_with_report

    ds = dcmread(io.BytesIO(dicom_bytes((gradient(64, 64) * 1000).astype(np.uint16))))
    ds.PatientName = "DOE^JANE"
    del ds.PixelData
    header_only = io.BytesIO()
    ds.save_as(header_only, enforce_file_format=True)
    result = deidentify_with_report(header_only.getvalue())
    assert not result.has_pixels and b"DOE" not in result.data
    src = tmp_path / "header.dcm"
    src.write_bytes(header_only.getvalue())
    with caplog.at_level("WARNING"):
        assert main(["deidentify", str(src), "--out", str(tmp_path / "copy.dcm")]) == 0
    assert "holds no pixel data" in caplog.text
    ds = dcmread(io.BytesIO(dicom_bytes((gradient(64, 64) * 1000).astype(np.uint16))))
    ds.file_meta.TransferSyntaxUID = "1.2.840.113619.5.2"  # GE's private implicit big-endian-pixels syntax, in name
    private = io.BytesIO()
    ds.save_as(private, enforce_file_format=True)
    assert deidentify_with_report(private.getvalue()).has_pixels


def test_an_800_kb_name_is_looked_for_in_a_bounded_number_of_words(tmp_path) -> None:
    """100,000 name parts had taken 7 s a copy (every part against every value): the words looked for are bounded,
    and the first ones still found."""
    from medimg_demo.imaging.echoes import MAX_IDS, MAX_WORDS, identifiers

    ds = dcmread(io.BytesIO(dicom_bytes((gradient() * 1000).astype(np.uint16))))
    ds.PatientName = "^".join(f"N{i:06d}" for i in range(100_000))
    ds.Modality, ds.Manufacturer = "CT", "N000001"
    words, runs = identifiers(ds)
    assert len(words) <= MAX_WORDS * 4 and len(runs) <= MAX_IDS
    assert all(dcmread(io.BytesIO(out)).Manufacturer == "" for out in _both_copies(ds, tmp_path))


def test_a_defined_modality_and_code_strings_are_kept() -> None:
    ds = dcmread(io.BytesIO(dicom_bytes((gradient() * 1000).astype(np.uint16))))
    ds.Modality, ds.BodyPartExamined, ds.ImageType = "mr", "ABDOMENPELVISLEGS", ["ORIGINAL", "PRIMARY", "M", "ND"]
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    back = dcmread(io.BytesIO(deidentify(buf.getvalue())))
    assert back.Modality == "MR" and back.BodyPartExamined == "ABDOMENPELVISLEG"  # one long word: cut to 16
    assert list(back.ImageType) == ["ORIGINAL", "PRIMARY", "M", "ND"]


def test_a_value_of_the_wrong_length_is_refused_without_quoting_it(caplog) -> None:
    """pydicom's BytesLengthException (an Exception, not a ValueError) quoted up to 256 bytes of the value, and
    escaped the de-identifier as it was: a server's traceback, or the CLI's, printed a patient's name."""
    import struct

    def element(group: int, elem: int, value: bytes) -> bytes:  # implicit VR little endian, written by hand
        return struct.pack("<HHI", group, elem, len(value)) + value

    from pydicom.uid import ImplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.Modality = "CT"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue() + element(0x0018, 0x9306, b"DOE^JANE PID99887\x00")  # 18 bytes where 8-byte doubles go
    caplog.set_level(logging.DEBUG)
    with pytest.raises(InputError) as err:
        deidentify_with_report(data)
    assert err.value.__cause__ is None and err.value.__suppress_context__  # nothing chained to print later
    assert "DOE" not in str(err.value) and "DOE" not in caplog.text


def test_an_image_attribute_written_as_other_binary_numbers_is_kept() -> None:
    """Old files write Rows or Columns as SS: numbers carry no text, so the element stays and the copy decodes."""
    ds = dcmread(io.BytesIO(dicom_bytes((gradient() * 1000).astype(np.uint16))))
    ds.add(DataElement(Tag(0x0028, 0x0010), "SS", int(ds.Rows)))
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    back = dcmread(io.BytesIO(deidentify(buf.getvalue())))
    assert back.Rows == ds.Rows and back.pixel_array.shape == ds.pixel_array.shape


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    """One explicit VR little endian element with a short (2-byte) length."""
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


@pytest.mark.parametrize("writer", ["bytes", "file"])
def test_an_element_written_after_compressed_pixel_data_is_not_copied_with_them(writer: str, tmp_path) -> None:
    """Compressed pixel data over 1 MB are copied byte for byte up to their sequence delimiter, not "up to the next
    element": a non-conformant export that writes a Patient's Name (or anything) after them, out of tag order, loses
    it; the copy still reads, its pixel data unchanged."""
    from medimg_demo.imaging.deid import deidentify_file

    data = _large_dicom("rle")
    name = b"DOE^JANE^PID998877"
    forged = data + _element(0x0010, 0x0010, b"PN", name) + _element(0x0008, 0x0080, b"LO", b"ST ELSEWHERE HOSP")
    src, dst = tmp_path / "in.dcm", tmp_path / "out.dcm"
    src.write_bytes(forged)
    out_bytes = deidentify(forged) if writer == "bytes" else (deidentify_file(src, dst), dst.read_bytes())[1]
    assert name not in out_bytes and b"ELSEWHERE" not in out_bytes
    out = dcmread(io.BytesIO(out_bytes))
    assert out.PixelData == dcmread(io.BytesIO(data)).PixelData and not str(out.get("PatientName", ""))


def test_compressed_pixel_data_whose_fragments_do_not_end_at_their_delimiter_are_refused() -> None:
    """Fragments that do not end at a sequence delimiter (a length past the end of the file, cut short, or followed by
    something that is not an item) leave no safe end to copy to: the file is refused, naming no value."""
    data = _large_dicom("rle")
    end = data.rindex(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")  # the delimiter, then the trailing padding
    first = data.index(b"\xfe\xff\x00\xe0", data.index(b"\xe0\x7f\x10\x00"))  # the basic offset table's item
    too_long = data[:first + 4] + struct.pack("<I", 0x7FFFFFF0) + data[first + 8:]  # pydicom finds the delimiter
    with pytest.raises(InputError, match="fragments"):  # by searching for it; the walk sees a length past the end
        deidentify(too_long)
    for broken in (data[:end], data[:end] + _element(0x0010, 0x0010, b"PN", b"DOE^JANE")):
        with pytest.raises(InputError) as err:
            deidentify(broken)
        assert "DOE" not in str(err.value)


def test_a_failed_copy_says_which_side_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both failures read "The file could not be read, or the copy written; check both paths"."""
    import errno
    import os

    from medimg_demo.imaging import deid

    src = tmp_path / "in.dcm"
    src.write_bytes(dicom_bytes((gradient() * 1000).astype(np.uint16)))
    with pytest.raises(InputError, match=r"^The file could not be read \(Permission denied\)"):
        real_open = open

        def unreadable(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
            if Path(path) == src:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr("builtins.open", unreadable)
        deid.deidentify_file(src, tmp_path / "out.dcm")
    monkeypatch.undo()

    def full(a, b):  # noqa: ANN001
        raise OSError(errno.ENOSPC, "No space left on device", str(a))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(InputError, match=rf"^The copy could not be written in {tmp_path} \(No space left on device\)"):
        deid.deidentify_file(src, tmp_path / "out.dcm")
    assert not list(tmp_path.glob(".out.dcm.*"))  # no scratch file left
