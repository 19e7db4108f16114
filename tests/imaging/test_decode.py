"""Readers: PNG/JPEG modes and bit depths, DICOM LUT pipeline, and clear errors on non-images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from conftest import dicom_bytes, gradient, png_bytes
from medimg_demo.errors import InputError
from medimg_demo.imaging import ACCEPTED, read_bytes, read_file


def test_png_8bit_grayscale_roundtrip() -> None:
    g = (gradient() * 255).round().astype(np.uint8)
    s = read_bytes(png_bytes(g))
    assert s.source_format == "png" and s.pixels.dtype == np.float32
    assert s.pixels.shape == g.shape
    np.testing.assert_allclose(s.pixels, g / 255.0, atol=1e-6)


def test_png_16bit_keeps_precision() -> None:
    g = (gradient() * 65535).round().astype(np.uint16)
    s = read_bytes(png_bytes(g))
    np.testing.assert_allclose(s.pixels, g / 65535.0, atol=1e-6)
    # 16-bit detail that 8 bits would flatten survives
    assert len(np.unique(s.pixels)) > 256


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "LA"])
def test_png_colour_modes_become_gray(mode: str) -> None:
    g = (gradient() * 255).astype(np.uint8)
    img = Image.fromarray(g).convert("RGB")
    if mode == "RGBA":
        img = img.convert("RGBA")
    elif mode == "P":
        img = img.quantize(256)  # an exact palette for <= 256 grey levels
    elif mode == "LA":
        img = Image.fromarray(g).convert("LA")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    s = read_bytes(buf.getvalue())
    assert s.pixels.ndim == 2 and s.pixels.shape == g.shape
    assert np.abs(s.pixels - g / 255.0).mean() < 0.02


def test_jpeg() -> None:
    g = (gradient() * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(g).save(buf, format="JPEG", quality=95)
    s = read_bytes(buf.getvalue())
    assert s.source_format == "jpeg"
    assert np.abs(s.pixels - g / 255.0).mean() < 0.02


def test_photo_metadata_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Pillow logs each EXIF tag it reads at DEBUG with its value: ``-v`` (the root logger at DEBUG) printed a
    JPEG's Artist and ImageDescription."""
    import logging

    exif = Image.Exif()
    exif[0x013B], exif[0x010E] = "DOE^JANE PID998877", "patient DOE"  # Artist, ImageDescription
    buf = io.BytesIO()
    Image.fromarray((gradient() * 255).astype(np.uint8)).save(buf, format="JPEG", exif=exif.tobytes())
    caplog.set_level(logging.DEBUG)
    assert read_bytes(buf.getvalue()).pixels.shape == (64, 80)
    assert "DOE" not in caplog.text


def test_dicom_monochrome2_16bit_rescale_and_window() -> None:
    # Stored values 0..2000 with intercept -1024 -> HU -1024..976; lung window C=-600 W=1500.
    stored = (gradient() * 2000).astype(np.uint16)
    s = read_bytes(dicom_bytes(stored, slope=1.0, intercept=-1024.0, window=(-600.0, 1500.0)))
    hu = stored.astype(float) - 1024.0
    expected = np.clip((hu - (-600 - 0.5)) / (1500 - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(s.pixels, expected, atol=1e-5)
    assert s.modality == "CT" and s.pixel_spacing_mm == (0.7, 0.7)


def test_dicom_rescale_slope_changes_output_without_window() -> None:
    stored = (gradient() * 1000).astype(np.uint16)
    a = read_bytes(dicom_bytes(stored, slope=2.0, intercept=-1000.0, window=(0.0, 400.0)))
    b = read_bytes(dicom_bytes(stored, slope=1.0, intercept=-1000.0, window=(0.0, 400.0)))
    assert not np.allclose(a.pixels, b.pixels)  # the modality LUT is applied before the window


def test_dicom_monochrome1_is_inverted() -> None:
    stored = (gradient() * 255).astype(np.uint8)
    m2 = read_bytes(dicom_bytes(stored, photometric="MONOCHROME2", modality="CR"))
    m1 = read_bytes(dicom_bytes(stored, photometric="MONOCHROME1", modality="CR"))
    np.testing.assert_allclose(m1.pixels, 1.0 - m2.pixels, atol=1e-6)
    # bright blob in stored values is dark in MONOCHROME1 display
    assert m1.pixels[25, 48] < m1.pixels[5, 5]


def test_dicom_8bit_without_preamble() -> None:
    stored = (gradient() * 255).astype(np.uint8)
    s = read_bytes(dicom_bytes(stored, preamble=False, modality="MR"))
    assert s.source_format == "dicom" and s.modality == "MR"
    np.testing.assert_allclose(s.pixels, (stored - stored.min()) / (stored.max() - stored.min()), atol=1e-6)


def test_dicom_signed_pixels() -> None:
    stored = ((gradient() - 0.5) * 3000).astype(np.int16)
    s = read_bytes(dicom_bytes(stored, signed=True, slope=1.0, intercept=0.0, window=(0.0, 2000.0)))
    expected = np.clip((stored.astype(float) - (0.0 - 0.5)) / (2000.0 - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(s.pixels, expected, atol=1e-5)  # read as unsigned, negatives would be white
    assert stored.min() < 0 and s.pixels.min() < 0.5


def test_dicom_phi_never_in_study(tmp_path) -> None:
    stored = (gradient() * 255).astype(np.uint8)
    path = tmp_path / "Doe_Jane_PID-998877"  # extension-less, with identifiers in the name
    path.write_bytes(dicom_bytes(stored))
    s = read_file(path)
    text = repr(s) + str(s.__dict__.keys()) + str(s.modality) + str(s.pixel_spacing_mm)
    for secret in ("Doe", "Jane", "PID-998877", "19600101", "Hidden Road", "Secretia"):
        assert secret not in text


def test_dicom_without_pixel_data_is_input_error() -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Modality = "SR"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    with pytest.raises(InputError, match="no image"):
        read_bytes(buf.getvalue())


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, this is a text file and not an image\n" * 5, b"PK\x03\x04" + b"\x00" * 200],
    ids=["empty", "text", "zip"],
)
def test_non_images_get_input_error_listing_formats(data: bytes) -> None:
    with pytest.raises(InputError) as exc:
        read_bytes(data)
    assert "PNG" in str(exc.value) and "DICOM" in str(exc.value)


def test_truncated_png_is_input_error() -> None:
    data = png_bytes((gradient() * 255).astype(np.uint8))
    with pytest.raises(InputError, match="damaged or truncated"):
        read_bytes(data[: len(data) // 2])


def test_tiny_image_is_refused() -> None:
    with pytest.raises(InputError, match="at least"):
        read_bytes(png_bytes(np.zeros((1, 300), dtype=np.uint8)))


def test_accepted_text_names_formats() -> None:
    assert "PNG" in ACCEPTED and "JPEG" in ACCEPTED and "DICOM" in ACCEPTED


def test_a_jpeg_upload_with_scans_past_the_limit_is_refused_from_bytes_and_from_a_file(tmp_path) -> None:  # noqa: ANN001
    """A progressive scan repeated 2,000 times (165 KB) kept the decoder busy for 20 s at 4096x4096."""
    from medimg_demo.imaging import jpeg_markers

    buf = io.BytesIO()
    Image.fromarray((gradient(128, 128) * 255).astype(np.uint8)).save(buf, format="JPEG", progressive=True)
    jpg = buf.getvalue()
    last = jpg[jpg.rindex(b"\xff\xda") : -2]
    forged = jpg[:-2] + last * jpeg_markers.MAX_SCANS + b"\xff\xd9"
    path = tmp_path / "scan.jpg"
    path.write_bytes(forged)
    for read in (lambda: read_bytes(forged), lambda: read_file(path)):
        with pytest.raises(InputError, match="more than 64 scans .* baseline JPEG or a PNG"):
            read()
    path.write_bytes(jpg)
    assert read_file(path).pixels.shape == (128, 128)


def test_only_the_image_s_own_scans_and_segments_count() -> None:
    """Start-of-scan bytes in an APP payload (an EXIF thumbnail) or after EOI (a motion photo's video) are no scans;
    a header of endless empty comments is refused, and a file's position is left where it was."""
    from medimg_demo.imaging import jpeg_markers

    buf = io.BytesIO()
    Image.fromarray((gradient(64, 64) * 255).astype(np.uint8)).save(buf, format="JPEG")
    jpg = buf.getvalue()
    sos = b"\xff\xda" * 100
    app = b"\xff\xe1" + (len(sos) + 2).to_bytes(2, "big") + sos
    for ok in (jpg, jpg[:2] + app + jpg[2:], jpg + sos * 50):
        assert jpeg_markers.refusal(ok) is None and read_bytes(ok).pixels.shape == (64, 64)
    comments = jpg[:2] + b"\xff\xfe\x00\x02" * (jpeg_markers.MAX_SEGMENTS + 1) + jpg[2:]
    assert jpeg_markers.refusal(comments) == "more than 10,000 marker segments"
    fh = io.BytesIO(comments)
    fh.seek(5)
    assert jpeg_markers.refusal(fh) is not None and fh.tell() == 5
