"""check_dicom_structure: refuses DICOM files that would make pydicom build too many objects, inflate too far, nest
too deep or rescan without end, in bounded memory and before pydicom parses them; passes ordinary and damaged ones."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info

from medimg_demo.errors import InputError
from medimg_demo.imaging import dicom_guard
from medimg_demo.imaging.dicom_guard import MAX_DICOM_ELEMENTS, MAX_INFLATED_BYTES, check_dicom_structure

N = 200_000  # well over MAX_DICOM_ELEMENTS
_MARKER = "Doe^Secret"  # a value that must never reach an error message
_SYNTAXES = {"explicit": uid.ExplicitVRLittleEndian, "implicit": uid.ImplicitVRLittleEndian,
             "big": uid.ExplicitVRBigEndian, "deflated": uid.DeflatedExplicitVRLittleEndian,
             "jpeg": uid.JPEGBaseline8Bit}


def _item_open(e: str = "<") -> bytes:  # an item of undefined length; its delimiter; a sequence delimiter
    return struct.pack(e + "HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)


def _item_close(e: str = "<") -> bytes:
    return struct.pack(e + "HHI", 0xFFFE, 0xE00D, 0)


def _seq_close(e: str = "<") -> bytes:
    return struct.pack(e + "HHI", 0xFFFE, 0xE0DD, 0)


def _dataset(syntax: str | None = None) -> Dataset:
    ds = Dataset()
    if syntax is not None:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = uid.CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
        ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality, ds.PatientName = uid.CTImageStorage, "1.2.3.4", "CT", _MARKER
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "113100", "DCM"
    item = Dataset()
    item.ConceptNameCodeSequence = [code]  # a sequence inside a sequence
    ds.ContentSequence = [item, Dataset()]
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelData = np.arange(64, dtype=np.uint16).tobytes()
    return ds


def _file(kind: str) -> bytes:
    """A small valid file: with preamble and meta in the named transfer syntax, or ("raw-...") a bare data set."""
    buf = io.BytesIO()
    if kind.startswith("raw-"):
        out = DicomBytesIO()
        out.is_implicit_VR, out.is_little_endian = kind == "raw-implicit", kind != "raw-big"
        write_dataset(out, _dataset())
        return out.getvalue()
    _dataset(_SYNTAXES[kind]).save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _head(syntax: str = "explicit") -> bytes:
    """Preamble, meta and a few elements (deflated: the meta only); the attack follows."""
    ds = _dataset(_SYNTAXES[syntax])
    if syntax == "deflated":
        out = DicomBytesIO()
        out.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(out, ds.file_meta)
        return out.getvalue()
    del ds.PixelData, ds.ContentSequence
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _check(data: bytes, at: int = 7) -> None:
    fp = io.BytesIO(data)
    fp.seek(at)
    try:
        check_dicom_structure(fp, len(data))
    finally:
        assert fp.tell() == at  # the position is restored, refused or not


def _refused(data: bytes, peak_mb: float | None = None) -> str:
    """The InputError's message; with ``peak_mb``, Python's peak memory while refusing stays under it."""
    if peak_mb is not None:
        tracemalloc.start()
    try:
        with pytest.raises(InputError) as info:
            _check(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak_mb is None or peak < peak_mb * 1e6, f"peak {peak / 1e6:.0f} MB"
    message = str(info.value)
    assert _MARKER not in message and "upload" in message.lower()  # says what to do, quotes nothing
    return message


def _items(n: int, e: str = "<", defined_items: bool = False) -> bytes:
    return struct.pack(e + "HHI", 0xFFFE, 0xE000, 0) * n if defined_items else (_item_open(e) + _item_close(e)) * n


def _sq(body: bytes, e: str = "<", implicit: bool = False, defined: bool = False, tag: int = 0x00400275) -> bytes:
    length = len(body) if defined else 0xFFFFFFFF
    head = struct.pack(e + "HHI", tag >> 16, tag & 0xFFFF, length) if implicit else \
        struct.pack(e + "HH2sHI", tag >> 16, tag & 0xFFFF, b"SQ", 0, length)
    return head + body + (b"" if defined else _seq_close(e))


@pytest.mark.parametrize("kind", ["explicit", "implicit", "big", "deflated", "raw-explicit", "raw-implicit"])
def test_ordinary_files_pass(kind: str) -> None:
    data = _file(kind)
    assert (data[128:132] == b"DICM") == (not kind.startswith("raw-"))
    _check(data)
    _check(data, at=0)


def test_encapsulated_pixel_data_passes_and_its_fragments_are_counted() -> None:
    frag = struct.pack("<HHI", 0xFFFE, 0xE000, 4) + b"\xff\xd8\xff\xd9"
    pixels = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000, 0)
    head = _head("jpeg")
    _check(head + pixels + frag * 3 + _seq_close())
    _refused(head + pixels + frag * N + _seq_close())


@pytest.mark.parametrize("syntax, e, implicit, defined_seq, defined_items", [
    ("explicit", "<", False, False, False), ("explicit", "<", False, False, True),
    ("explicit", "<", False, True, True), ("explicit", "<", False, True, False),
    ("implicit", "<", True, False, False), ("implicit", "<", True, True, True),
    ("big", ">", False, False, False), ("big", ">", False, True, True),
])
def test_many_empty_items_are_refused(syntax: str, e: str, implicit: bool, defined_seq: bool,
                                      defined_items: bool) -> None:
    traced = syntax == "explicit" and defined_seq == defined_items  # tracemalloc is slow: two variants
    data = _head(syntax) + _sq(_items(N, e, defined_items), e, implicit, defined_seq)
    message = _refused(data, 50 if traced else None)
    assert f"{MAX_DICOM_ELEMENTS:,}" in message


def test_many_items_in_a_private_un_sequence_and_without_meta_are_refused() -> None:
    un = struct.pack("<HH2sHI", 0x0009, 0x1010, b"UN", 0, 0xFFFFFFFF) + _items(N) + _seq_close()
    _refused(_head() + un)
    _refused(_sq(_items(N), implicit=True))  # no preamble, no meta: guessed implicit VR
    _refused(_sq(_items(N, ">"), ">"))  # no meta: guessed explicit big endian


def test_many_zero_length_elements_are_refused() -> None:
    body = b"".join(struct.pack("<HH2sH", 0x0009 + 2 * (i // 0xF000), 0x1000 + i % 0xF000, b"LO", 0) for i in range(N))
    _refused(_head() + body)


def test_deflate_bomb_is_refused_without_inflating_it_all() -> None:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    size = MAX_INFLATED_BYTES + (8 << 20)
    body = [deflater.compress(struct.pack("<HH2sHI", 0x0009, 0x1010, b"OB", 0, size))]
    body += [deflater.compress(bytes(1 << 20)) for _ in range(size >> 20)] + [deflater.flush()]
    data = _head("deflated") + b"".join(body)
    assert len(data) < 200_000
    assert "Deflated" in _refused(data, peak_mb=16)


def test_deflated_body_within_the_limit_is_walked_and_a_damaged_one_is_left_alone() -> None:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflater.compress(_sq(_items(N))) + deflater.flush()
    _refused(_head("deflated") + body)
    _check(_head("deflated") + body[: len(body) // 2])  # truncated stream: pydicom's own error applies
    _check(_head("deflated") + b"not deflate data at all" * 10)


def test_deep_nesting_is_refused() -> None:
    def nest(depth: int) -> bytes:
        inner = b""
        for _ in range(depth):
            inner = _sq(_item_open() + inner + _item_close())
        return inner

    _check(_head() + nest(dicom_guard.MAX_DICOM_DEPTH))
    assert "deep" in _refused(_head() + nest(dicom_guard.MAX_DICOM_DEPTH + 1))


def test_endless_rescanning_is_refused() -> None:
    # each item holds a value with no end marker: pydicom scans to the end of the file, rewinds, reads on as items
    cycle = _item_open() + struct.pack("<HH2sHI", 0x0009, 0x1010, b"OB", 0, 0xFFFFFFFF)
    body = struct.pack("<HH2sHI", 0x0040, 0x0275, b"SQ", 0, 0xFFFFFFFF) + cycle * 200
    pad = b"\x01" * (1 << 20)  # one item whose length runs past the end (zeros would be 8-byte empty items)
    assert "too long" in _refused(_head() + body + pad)
    _check(_head() + body[: 12 + 3 * len(cycle)] + pad)  # a few such values (a damaged file) pass


@pytest.mark.parametrize("damage", [
    lambda d: d[:-5],  # truncated in the pixel data
    lambda d: d[:200],  # truncated in the header
    lambda d: d + struct.pack("<HH2sH", 0x0009, 0x0010, b"LO", 0xFFF0),  # length past the end
    lambda d: d + _sq(struct.pack("<HHI", 0x0008, 0x0010, 0x7FFFFFFF)),  # not an item tag
    lambda d: d + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF) + b"\x01" * 64,  # no delimiter
    lambda d: d[:132] + b"\xff" * 300,  # garbage after the prefix
    lambda d: b"",
])
def test_damaged_files_are_left_to_the_reader(damage: Callable[[bytes], bytes]) -> None:
    _check(damage(_file("explicit")))


def test_large_files_are_walked_fast_and_bombs_refused_early() -> None:
    size = 50 << 20
    pixels = _head() + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, size) + bytes(size)
    start = time.perf_counter()
    _check(pixels)
    walked = time.perf_counter() - start
    bomb = _head() + _sq(_items(size // 16))
    start = time.perf_counter()
    _refused(bomb)
    print(f"50 MB pixel data walked in {walked:.3f} s; 50 MB item bomb refused in {time.perf_counter() - start:.3f} s")


def test_a_long_multi_valued_text_counts_each_value() -> None:
    """pydicom makes one object of each backslash-separated value of a text VR (a 2 MB Window Center of "1\\1\\..."
    cost ~400 MB): past a kilobyte, each value counts as an element; a long single value (a comment) does not."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    def file(**values: str) -> io.BytesIO:
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        for k, v in values.items():
            setattr(ds, k, v)
        buf = io.BytesIO()
        ds.save_as(buf, implicit_vr=False, little_endian=True)
        buf.seek(0)
        return buf

    many = "\\".join(["1"] * (MAX_DICOM_ELEMENTS + 10))
    for bomb in (file(WindowCenter=many), file(ImageComments="x", PatientName=many)):
        with pytest.raises(InputError, match="attributes"):
            check_dicom_structure(bomb, bomb.getbuffer().nbytes)
    fine = file(ImageComments="x" * 60_000, WindowCenter="\\".join(["40"] * 500))
    check_dicom_structure(fine, fine.getbuffer().nbytes)


def _el(group: int, element: int, vr: str, value: bytes) -> bytes:
    """An explicit VR little endian element."""
    if vr in ("OB", "OW", "SQ", "UN", "UT"):
        return struct.pack("<HH2sHL", group, element, vr.encode(), 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr.encode(), len(value)) + value


def _meta(syntax: bytes, vr: str = "UI") -> bytes:
    return b"\0" * 128 + b"DICM" + _el(2, 0x10, vr, syntax)


def test_the_transfer_syntax_is_the_one_pydicom_reads(monkeypatch) -> None:
    """A second read found two files the walk judged apart from pydicom: a Deflated UID written as bytes (OB), which
    pydicom never takes for Deflated (so the body is read as it stands: an item bomb), and one padded past what the
    walk reads (which pydicom strips and inflates: a deflate bomb). Both are judged as pydicom reads them."""
    import zlib

    from medimg_demo.imaging import dicom_guard, dicom_inflate

    monkeypatch.setattr(dicom_guard, "MAX_DICOM_ELEMENTS", 1000)
    items = b"".join(struct.pack("<HHL", 0xFFFE, 0xE000, 0) for _ in range(5000))
    bomb = struct.pack("<HH2sHL", 0x0008, 0x1115, b"SQ", 0, 0xFFFFFFFF) + items + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    as_bytes = _meta(b"1.2.840.10008.1.2.1.99\0", "OB") + bomb
    monkeypatch.setattr(dicom_inflate, "MAX_INFLATED_BYTES", 1 << 20)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = _el(8, 0x60, "CS", b"CT") + _el(0x0009, 0x1001, "OB", b"\0" * (4 << 20))
    padded = _meta(b"1.2.840.10008.1.2.1.99" + b" " * 1100) + packer.compress(body) + packer.flush()
    for data in (as_bytes, padded):
        with pytest.raises(InputError):
            check_dicom_structure(io.BytesIO(data), len(data))


def test_a_command_set_in_a_file_is_refused() -> None:
    """Group 0000 belongs to network messages; the frame reader reads it with the data set in one encoding, which
    the walk cannot follow: a file that carries one is refused."""
    data = (_meta(b"1.2.840.10008.1.2.1\0") + struct.pack("<HHL", 0, 0, 4) + struct.pack("<L", 4)
            + _el(0x0008, 0x0060, "CS", b"CT"))
    with pytest.raises(InputError, match="command set"):
        check_dicom_structure(io.BytesIO(data), len(data))


def test_a_long_number_array_counts_each_number(monkeypatch) -> None:
    """pydicom splits US/SS/UL/SL/FL/FD/AT values into one number object each (a 2 MB implicit Rows: 42 MB)."""
    from medimg_demo.imaging import dicom_guard

    monkeypatch.setattr(dicom_guard, "MAX_DICOM_ELEMENTS", 1000)
    rows = struct.pack("<HHL", 0x0028, 0x0010, 4000) + b"\xfe\xff" * 2000  # implicit VR: the dictionary says US
    data = _meta(b"1.2.840.10008.1.2\0") + rows
    with pytest.raises(InputError, match="attributes"):
        check_dicom_structure(io.BytesIO(data), len(data))
    short = _meta(b"1.2.840.10008.1.2\0") + struct.pack("<HHL", 0x0028, 0x0010, 2) + b"\x00\x02"
    check_dicom_structure(io.BytesIO(short), len(short))


def test_a_deflated_file_is_refused_where_it_is_not_inflated() -> None:
    """The frame reader parses a file as it is stored: analysis refuses a Deflated file outright (before pydicom
    inflates it), while the de-identification's reader, which inflates it, may read it."""
    from medimg_demo.imaging.decode import read_bytes

    data = _file("deflated")
    check_dicom_structure(io.BytesIO(data), len(data))
    with pytest.raises(InputError, match="Deflated"):
        check_dicom_structure(io.BytesIO(data), len(data), deflated=False)
    with pytest.raises(InputError, match="Deflated"):
        read_bytes(data)
