"""A compressed frame's own header is checked before it is decoded: a DICOM header that says 64x64 cannot make the
decoder allocate by a codestream that says 16000x16000, and decoded bytes (samples, bits) are bounded too."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless, generate_uid

from conftest import dicom_bytes, gradient
from medimg_demo.errors import InputError
from medimg_demo.imaging import codestream, jpeg_markers, read_bytes

openjpeg_utils = pytest.importorskip("openjpeg.utils")

INCONSISTENT = "The DICOM pixel data is damaged or inconsistent"


def _dicom(frames: list[bytes], syntax: str, rows: int, cols: int, *, samples: int = 1, bits: int = 8,
           stored: int | None = None, photometric: str = "MONOCHROME2") -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "MR"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, samples, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, stored or bits, (stored or bits) - 1, 0
    if samples > 1:
        ds.PlanarConfiguration = 0
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    ds.PixelData = encapsulate(frames)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _j2k(arr: np.ndarray, **kwargs: object) -> bytearray:
    return bytearray(openjpeg_utils.encode_array(arr, codec_format=0, **kwargs))


def _siz(cs: bytearray) -> int:
    i = cs.find(b"\xff\x51")
    assert i == 2
    return i


def _forge_size(cs: bytearray, width: int, height: int) -> bytearray:
    i = _siz(cs)
    struct.pack_into(">IIII", cs, i + 6, width, height, 0, 0)
    struct.pack_into(">II", cs, i + 22, width, height)  # one tile
    return cs


@pytest.fixture()
def decoder_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """pydicom's pixel_array, recorded: the forged frames must be refused before it is ever called."""
    import pydicom.pixels

    calls: list[int] = []
    real = pydicom.pixels.pixel_array

    def spy(*args: object, **kwargs: object) -> np.ndarray:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pydicom.pixels, "pixel_array", spy)
    return calls


def _gray8(h: int = 64, w: int = 64) -> np.ndarray:
    return (gradient(h, w) * 255).astype(np.uint8)


def test_real_jpeg2000_frames_decode_including_12_bit_in_16_and_colour(decoder_calls: list[int]) -> None:
    arr = _gray8()
    s = read_bytes(_dicom([bytes(_j2k(arr))], JPEG2000Lossless, 64, 64))
    np.testing.assert_array_equal(s.values, arr)
    deep = (gradient(64, 64) * 4000).astype(np.uint16)  # precision 12 in a 16-bit Bits Allocated
    s = read_bytes(_dicom([bytes(_j2k(deep, bits_stored=12))], JPEG2000Lossless, 64, 64, bits=16, stored=12))
    np.testing.assert_array_equal(s.values, deep)
    rgb = np.stack([_gray8(), _gray8()[::-1], np.full((64, 64), 90, np.uint8)], axis=-1)
    ybr = _dicom([bytes(_j2k(rgb, photometric_interpretation=1))], JPEG2000Lossless, 64, 64, samples=3,
                 photometric="YBR_RCT")
    assert read_bytes(ybr).pixels.shape == (64, 64)
    assert len(decoder_calls) == 3


def test_real_baseline_jpeg_frame_decodes() -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_gray8()).save(buf, format="JPEG", quality=95)
    s = read_bytes(_dicom([buf.getvalue()], JPEGBaseline8Bit, 64, 64))
    assert np.abs(s.values - _gray8().astype(np.float32)).mean() < 3


@pytest.mark.parametrize("size", [16000, 40000])
def test_a_jpeg2000_size_forged_large_is_refused_before_any_decode(size: int, decoder_calls: list[int]) -> None:
    """The reviewer's repro: 64x64 in the header, 16000^2 or 40000^2 at 16 bits in the SIZ marker (1.5 / 9 GB)."""
    import tracemalloc

    cs = _forge_size(_j2k(_gray8()), size, size)
    cs[_siz(cs) + 40] = 15  # Ssiz: 16 bits unsigned
    data = _dicom([bytes(cs)], JPEG2000Lossless, 64, 64)
    assert len(data) < 2000
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=f"{INCONSISTENT}: the compressed image's width or height") as exc:
            read_bytes(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert decoder_calls == [] and peak < 50 * 1024 * 1024
    assert str(size) not in str(exc.value) and "Export the image again" in str(exc.value)


def _colour_in_gray() -> bytes:
    rgb = np.stack([_gray8()] * 3, axis=-1)
    return bytes(_j2k(rgb, photometric_interpretation=1))


def _precision_over() -> bytes:
    cs = _j2k(_gray8())
    cs[_siz(cs) + 40] = 15
    return bytes(cs)


def _tiny_tiles() -> bytes:
    cs = _j2k(_gray8(512, 512))
    struct.pack_into(">II", cs, _siz(cs) + 22, 4, 4)  # 16384 tiles: ~160 MB of decoder state from the header alone
    return bytes(cs)


@pytest.mark.parametrize(("make", "rows", "match"), [
    (lambda: bytes(_forge_size(_j2k(_gray8()), 64, 96)), 64, "width or height"),
    (_colour_in_gray, 64, "colour components differ from the header's Samples per Pixel"),
    (_precision_over, 64, "more bits a sample than the header's Bits Allocated"),
    (_tiny_tiles, 512, "more than 4,096 JPEG 2000 tiles"),
    (lambda: b"\xff\x4f\xff\x51\x00\x29" + b"\x00" * 20, 64, "malformed"),
    (lambda: b"not a codestream" * 4, 64, "does not start with a JPEG 2000 image header"),
])
def test_other_jpeg2000_disagreements_are_refused(make, rows: int, match: str,  # noqa: ANN001
                                                  decoder_calls: list[int]) -> None:
    with pytest.raises(InputError, match=match):
        read_bytes(_dicom([make()], JPEG2000Lossless, rows, rows))
    assert decoder_calls == []


def test_only_the_frame_decoded_is_checked_and_it_is_checked() -> None:
    good = bytes(_j2k(_gray8()))
    data = _dicom([good, bytes(_forge_size(_j2k(_gray8()), 16000, 16000)), good], JPEG2000Lossless, 64, 64)
    assert read_bytes(data, frame=0).frame_index == 0 and read_bytes(data, frame=2).frame_index == 2
    with pytest.raises(InputError, match="width or height"):
        read_bytes(data)  # the middle frame, shown first


def _jpeg_sof_patched(height: int, width: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_gray8()).save(buf, format="JPEG")
    jpg = bytearray(buf.getvalue())
    i = jpg.find(b"\xff\xc0")
    struct.pack_into(">HH", jpg, i + 5, height, width)
    return bytes(jpg)


@pytest.mark.parametrize(("height", "width", "match"), [
    (16000, 16000, "width or height differs"),
    (0, 64, "size is given only after its first scan"),  # a DNL marker would set the height later
])
def test_a_jpeg_frame_header_forged_is_refused_before_any_decode(height: int, width: int, match: str,
                                                                 decoder_calls: list[int]) -> None:
    with pytest.raises(InputError, match=match):
        read_bytes(_dicom([_jpeg_sof_patched(height, width)], JPEGBaseline8Bit, 64, 64))
    assert decoder_calls == []


def test_jpeg_ls_frame_header_is_read_from_sof55() -> None:
    # SOI, SOF55 (precision 16, 16000 x 16000, one component), SOS: the header of a JPEG-LS stream
    sof = b"\xff\xf7\x00\x0b\x10" + struct.pack(">HH", 16000, 16000) + b"\x01\x01\x11\x00"
    stream = b"\xff\xd8" + sof + b"\xff\xda\x00\x08\x01\x01\x00\x00\x00\x00" + b"\x00" * 32
    info = codestream.jpeg_header(stream)
    assert (info.width, info.height, info.components, info.precision) == (16000, 16000, 1, 16)
    with pytest.raises(InputError, match="oversize"):
        codestream.jpeg_header(b"\xff\xd8" + sof + b"\xff\xf8\x00\x0c\x04\x04" + b"\x00" * 8 + b"\xff\xda\x00\x02")


def test_an_rle_header_over_the_byte_budget_is_refused_before_any_decode(decoder_calls: list[int]) -> None:
    """8000x8000 is within the pixel limit, but 3 samples of 32 bits decode to 768 MB."""
    frame = struct.pack("<16I", 12, *[64 + k for k in range(12)], 0, 0, 0) + b"\x00" * 64
    data = _dicom([frame], RLELossless, 8000, 8000, samples=3, bits=32, photometric="RGB")
    with pytest.raises(InputError, match="MEDIMG_MAX_DECODED_BYTES") as exc:
        read_bytes(data)
    assert decoder_calls == [] and "8000" not in str(exc.value)


def test_an_rle_segment_that_expands_past_its_plane_is_refused_before_any_decode(decoder_calls: list[int]) -> None:
    """pydicom's RLE decoder expands a segment without a bound and compares lengths after: 200 KB -> 12.8 MB."""
    frame = struct.pack("<16I", 1, 64, *[0] * 14) + b"\x81\x00" * 100_000
    with pytest.raises(InputError, match="RLE data expands"):
        read_bytes(_dicom([frame], RLELossless, 64, 64))
    assert decoder_calls == []


def test_rle_no_op_runs_are_skipped_and_the_runs_between_them_counted() -> None:
    seg = b"\x80" * 1000 + b"\xfd\x07" + b"\x80" * 5 + b"\x01\x09\x0a" + b"\x80"  # 4 repeats, 2 literals
    assert codestream._rle_segment_length(seg, 10**6) == 6
    assert codestream._rle_segment_length(b"\x80" * 10**6 + b"\x81\x00" * 10, 100) == 128  # stops once past it


def test_real_rle_frame_decodes() -> None:
    from pydicom import dcmread

    arr = (gradient(64, 80) * 3000).astype(np.uint16)
    ds = dcmread(io.BytesIO(dicom_bytes(arr)))
    ds.compress(RLELossless, arr)
    buf = io.BytesIO()
    ds.save_as(buf)
    np.testing.assert_array_equal(read_bytes(buf.getvalue()).values, arr)


def test_rle_decodes_with_the_rust_plugin_to_the_pixels_of_pydicoms_own_decoder() -> None:
    """pylibjpeg-rle, which pydicom tries first where it is installed (23x its own numpy decoder), gives the same
    pixels."""
    import pydicom.pixels
    from pydicom import dcmread
    from pydicom.pixels import decoders

    if "pylibjpeg" not in decoders.RLELosslessDecoder.available_plugins:
        pytest.skip("pylibjpeg-rle is not installed")
    arr = (gradient(64, 80) * 3000).astype(np.uint16)
    arr[::7] = 0  # runs as well as literals
    ds = dcmread(io.BytesIO(dicom_bytes(arr)))
    ds.compress(RLELossless, arr)
    buf = io.BytesIO()
    ds.save_as(buf)
    values = read_bytes(buf.getvalue()).values
    for plugin in ("pylibjpeg", "pydicom"):
        np.testing.assert_array_equal(values, pydicom.pixels.pixel_array(io.BytesIO(buf.getvalue()),
                                                                         decoding_plugin=plugin))
    np.testing.assert_array_equal(values, arr)


def test_the_byte_budget_bounds_native_frames_too(monkeypatch: pytest.MonkeyPatch) -> None:
    data = dicom_bytes((gradient(64, 64) * 3000).astype(np.uint16))  # 8 KB decoded
    monkeypatch.setattr(codestream, "MAX_DECODED_BYTES", 64 * 64 * 2)
    assert read_bytes(data).pixels.shape == (64, 64)
    monkeypatch.setattr(codestream, "MAX_DECODED_BYTES", 64 * 64 * 2 - 1)
    with pytest.raises(InputError, match="MEDIMG_MAX_DECODED_BYTES"):
        read_bytes(data)


def test_the_default_byte_budget_follows_the_pixel_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from medimg_demo.imaging import study

    try:
        monkeypatch.delenv("MEDIMG_MAX_DECODED_BYTES", raising=False)
        assert importlib.reload(codestream).MAX_DECODED_BYTES == study.MAX_PIXELS * 6
        monkeypatch.setenv("MEDIMG_MAX_DECODED_BYTES", "1000000")
        assert importlib.reload(codestream).MAX_DECODED_BYTES == 1_000_000
    finally:
        monkeypatch.undo()
        importlib.reload(codestream)


def _cod(cs: bytes) -> tuple[int, int]:
    i = cs.index(b"\xff\x52")
    return i, struct.unpack_from(">H", cs, i + 2)[0]


def _with_precincts(cs: bytes, pp: int) -> bytes:
    """The main header's COD rewritten to state precincts of 2^(pp & 15) x 2^(pp >> 4) at every resolution."""
    i, length = _cod(cs)
    cod = bytearray(cs[i + 4 : i + 2 + length])
    cod[0] |= 1
    cod += bytes([pp] * (cod[5] + 1))
    return cs[:i] + b"\xff\x52" + struct.pack(">H", len(cod) + 2) + bytes(cod) + cs[i + 2 + length :]


def _with_blocks(cs: bytes, xcb: int) -> bytes:
    i, _ = _cod(cs)
    b = bytearray(cs)
    b[i + 10] = b[i + 11] = xcb
    return bytes(b)


def _coc_in_main_header(cs: bytes, xcb: int) -> bytes:
    """A COC for component 0 with 2^(xcb+2) code-blocks, placed after the COD."""
    i, length = _cod(cs)
    coc = bytes([0, 0]) + cs[i + 9 : i + 10] + bytes([xcb, xcb]) + cs[i + 12 : i + 14]
    j = i + 2 + length
    return cs[:j] + b"\xff\x53" + struct.pack(">H", len(coc) + 2) + coc + cs[j:]


def _cod_in_tile_part(cs: bytes, xcb: int) -> bytes:
    """The main COD copied, with 2^(xcb+2) code-blocks, into the first tile-part's header (which overrides it)."""
    i, length = _cod(cs)
    cod = bytearray(cs[i : i + 2 + length])
    cod[10] = cod[11] = xcb
    sot = cs.index(b"\xff\x90")
    b = bytearray(cs[: sot + 12] + bytes(cod) + cs[sot + 12 :])
    psot = struct.unpack_from(">I", b, sot + 6)[0]
    if psot:
        struct.pack_into(">I", b, sot + 6, psot + len(cod))
    return bytes(b)


@pytest.mark.parametrize("forge", [
    lambda cs: _with_precincts(cs, 0x11),  # 2x2 precincts: 1 KB, 4096^2 -> 9.3 GB of decoder state before this check
    lambda cs: _with_precincts(cs, 0x33),  # 8x8 precincts: 4-pixel code-blocks
    lambda cs: _with_blocks(cs, 0),  # 4x4 code-blocks
    lambda cs: _coc_in_main_header(cs, 0),
    lambda cs: _cod_in_tile_part(cs, 0),
], ids=["precincts-2", "precincts-8", "code-blocks-4", "coc", "tile-part-cod"])
def test_jpeg2000_code_blocks_or_precincts_forged_small_are_refused_before_any_decode(
        forge, decoder_calls: list[int]) -> None:  # noqa: ANN001
    cs = forge(bytes(_j2k(_gray8(256, 256))))
    with pytest.raises(InputError, match="code-blocks or precincts under 64 pixels") as exc:
        read_bytes(_dicom([cs], JPEG2000Lossless, 256, 256))
    assert decoder_calls == [] and "Export the image uncompressed" in str(exc.value)


def test_jpeg2000_coding_styles_real_encoders_use_pass() -> None:
    from pydicom.data import get_testdata_file

    from medimg_demo.imaging.j2k_coding import check_coding_styles

    cs = bytes(_j2k(_gray8(256, 256)))
    for ok in (cs, _with_precincts(cs, 0x77), _with_precincts(cs, 0x44), _with_blocks(cs, 1), _cod_in_tile_part(cs, 4),
               _coc_in_main_header(cs, 3)):
        check_coding_styles(ok, 0, 1)  # 64 and 32 px code-blocks; 128 and 16 px precincts (8 px code-blocks)
    arr = _gray8(256, 256)
    np.testing.assert_array_equal(read_bytes(_dicom([_cod_in_tile_part(cs, 4)], JPEG2000Lossless, 256, 256)).values, arr)
    for name in ("JPEG2000.dcm", "GDCMJ2K_TextGBR.dcm", "MR_small_jp2klossless.dcm"):  # pydicom's, from other encoders
        path = get_testdata_file(name)
        if path is not None:
            assert read_bytes(Path(path).read_bytes()).pixels.size > 0


def test_jpeg2000_headers_hold_only_markers_the_decoder_reads_by_length() -> None:
    """OpenJPEG finds the next marker after an unknown one by scanning, so a COD with 2x2 precincts behind a forged
    0xFF30 segment (a 172-byte frame: 2.4 GB at 2048x2048 in a reviewer's try) was missed by a walk by lengths."""
    from medimg_demo.imaging.j2k_coding import check_coding_styles

    cs = bytes(_j2k(_gray8(256, 256)))
    bad = _with_precincts(cs, 0x11)
    i, length = _cod(bad)
    hidden = bad[i : i + 2 + length]
    sot = cs.index(b"\xff\x90")
    forged = cs[:sot] + b"\xff\x30" + struct.pack(">H", len(hidden) + 2) + hidden + cs[sot:]
    with pytest.raises(InputError, match="marker this server does not read"):
        read_bytes(_dicom([forged], JPEG2000Lossless, 256, 256))
    wide = bytearray(cs)  # 1024x4 code-blocks: legal (area 4096), one exponent small
    wide[i + 10], wide[i + 11] = 8, 0
    check_coding_styles(bytes(wide), 0, 1)


def test_jpeg2000_tile_part_walk_is_bounded_and_a_broken_main_header_is_damaged(monkeypatch: pytest.MonkeyPatch) -> None:
    from medimg_demo.imaging import j2k_coding

    cs = bytes(_j2k(_gray8(64, 64)))
    sot = cs.index(b"\xff\x90")
    part = b"\xff\x90\x00\x0a\x00\x00" + struct.pack(">I", 14) + b"\x00\x01" + b"\xff\x93"
    monkeypatch.setattr(j2k_coding, "MAX_TILE_PARTS", 3)
    j2k_coding.check_coding_styles(cs[:sot] + part * 2 + cs[sot:], 0, 1)  # and the real one: 3
    with pytest.raises(InputError, match="more than 3 JPEG 2000 tile-parts"):
        j2k_coding.check_coding_styles(cs[:sot] + part * 3 + cs[sot:], 0, 1)
    with pytest.raises(InputError, match="header is truncated or malformed"):
        j2k_coding.check_coding_styles(cs[: sot - 3], 0, 1)
    com = b"\xff\x64\x00\x0e" + b"\x00" * 12  # a comment running past its tile-part's Psot (16)
    crossing = b"\xff\x90\x00\x0a\x00\x00" + struct.pack(">I", 16) + b"\x00\x01" + com
    with pytest.raises(InputError, match="header is truncated or malformed"):
        j2k_coding.check_coding_styles(cs[:sot] + crossing + cs[sot:], 0, 1)
    monkeypatch.setattr(j2k_coding, "MAX_SEGMENTS", 10)
    comments = b"\xff\x64\x00\x04\x00\x00" * 11
    with pytest.raises(InputError, match="more than 10 JPEG 2000 marker segments"):
        j2k_coding.check_coding_styles(cs[:sot] + comments + cs[sot:], 0, 1)


def test_a_jpeg_with_scans_repeated_past_the_limit_is_refused_before_any_decode(decoder_calls: list[int]) -> None:
    """Each progressive scan is a pass over the frame: repeated, a few bytes each, they cost CPU, not memory."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_gray8(256, 256)).save(buf, format="JPEG", progressive=True)
    jpg = buf.getvalue()
    scans = jpg.count(b"\xff\xda")
    assert 1 < scans <= jpeg_markers.MAX_SCANS
    assert read_bytes(_dicom([jpg], JPEGBaseline8Bit, 256, 256)).pixels.shape == (256, 256)
    assert decoder_calls == [1]
    last = jpg[jpg.rindex(b"\xff\xda") : -2]
    forged = jpg[:-2] + last * (jpeg_markers.MAX_SCANS - scans + 1) + b"\xff\xd9"
    with pytest.raises(InputError, match=f"a JPEG frame with more than {jpeg_markers.MAX_SCANS} scans"):
        read_bytes(_dicom([forged], JPEGBaseline8Bit, 256, 256))
    assert decoder_calls == [1]


def test_jpeg2000_quality_layers_past_the_limit_are_refused_and_an_unknown_body_part_is_not_quoted() -> None:
    """600 layers of a 752-byte 8000x8000 frame held the decoder (and the GIL) for 9 s in a live try."""
    from medimg_demo.imaging import j2k_coding
    from medimg_demo.models.gate import header_refusal

    cs = bytearray(_j2k(_gray8(64, 64)))
    i, _ = _cod(bytes(cs))
    struct.pack_into(">H", cs, i + 6, j2k_coding.MAX_LAYERS)
    j2k_coding.check_coding_styles(bytes(cs), 0, 1)
    struct.pack_into(">H", cs, i + 6, j2k_coding.MAX_LAYERS + 1)
    with pytest.raises(InputError, match="more than 64 JPEG 2000 quality layers"):
        j2k_coding.check_coding_styles(bytes(cs), 0, 1)
    reason = header_refusal("MR", "SMITHJOHN", "brain_mri")
    assert reason is not None and "SMITHJOHN" not in reason and "Body Part Examined is not one" in reason
