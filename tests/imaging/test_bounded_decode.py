"""Bounded memory: images are reduced while decoding, one DICOM frame is read, a pixel limit refuses the rest."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from conftest import dicom_bytes, gradient, png_bytes
from medimg_demo.errors import InputError
from medimg_demo.imaging import dicom as dicom_mod
from medimg_demo.imaging import raster as raster_mod
from medimg_demo.imaging import read_bytes, read_file
from medimg_demo.imaging.study import MAX_SIDE


def _big(h: int, w: int) -> np.ndarray:
    """A smooth image with structure at every scale (so a wrong reduction shows)."""
    return gradient(h, w)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "I;16", "P"])
def test_large_png_is_reduced_while_decoding_and_matches_a_block_mean(mode: str) -> None:
    h, w = 2600, 4500  # factor 3: 867 x 1500
    gray = _big(h, w)
    if mode == "I;16":
        img = Image.fromarray((gray * 65535).astype(np.uint16))
    else:
        img = Image.fromarray((gray * 255).astype(np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    s = read_bytes(buf.getvalue())
    assert s.pixels.shape == (867, 1500) and s.pixels.dtype == np.float32
    assert "4500x2600" in s.warnings[0] and str(MAX_SIDE) in s.warnings[0]
    ref = np.pad(gray, ((0, 1), (0, 0)), mode="edge")[: 867 * 3].reshape(867, 3, 1500, 3).mean(axis=(1, 3))
    tol = 0.02 if mode == "P" else 0.005  # a palette holds at most 256 colours after quantising
    assert np.abs(s.pixels - ref).mean() < tol


def test_large_jpeg_is_decoded_at_reduced_scale() -> None:
    rgb = (np.stack([_big(3000, 4200)] * 3, -1) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
    s = read_bytes(buf.getvalue())
    # Factor 3 is asked for; the JPEG decoder scales by 1/2 (a power of two), then a 2x2 block mean: 1/4 in all.
    assert s.pixels.shape == (750, 1050) and "4200x3000" in s.warnings[0]
    small = np.asarray(Image.fromarray(rgb).reduce(4).convert("L"), dtype=np.float32) / 255
    assert s.pixels.shape == small.shape and np.abs(s.pixels - small).mean() < 0.01


def test_small_images_are_not_reduced() -> None:
    s = read_bytes(png_bytes((gradient(300, 500) * 255).astype(np.uint8)))
    assert s.pixels.shape == (300, 500) and s.warnings == ()


def test_large_dicom_frame_is_reduced_with_its_pixel_spacing() -> None:
    stored = (gradient(2500, 4300) * 3000).astype(np.uint16)  # factor 3
    s = read_bytes(dicom_bytes(stored, slope=1, intercept=-1024, window=(40, 400), spacing=(0.2, 0.25)))
    assert s.pixels.shape == s.values.shape == (834, 1434)
    assert s.values.dtype == np.float32 and s.pixels.dtype == np.float32
    assert s.pixel_spacing_mm == pytest.approx((0.6, 0.75))
    hu = stored.astype(np.float64) - 1024
    assert s.values[100, 200] == pytest.approx(hu[300:303, 600:603].mean(), abs=0.01)


def test_multiframe_dicom_reads_one_frame_only(tmp_path) -> None:
    from pydicom import dcmread

    base = (gradient(512, 512) * 2000).astype(np.uint16)
    frames = np.stack([base + 10 * k for k in range(64)])  # 32 MB of pixel data
    ds = dcmread(io.BytesIO(dicom_bytes(base)))
    ds.NumberOfFrames = len(frames)
    ds.PixelData = frames.tobytes()
    path = tmp_path / "multi.dcm"
    ds.save_as(path, enforce_file_format=True)
    del ds, frames
    tracemalloc.start()
    try:
        s = read_file(path, frame=5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert s.n_frames == 64 and s.frame_index == 5
    np.testing.assert_allclose(s.values, base.astype(np.float32) + 50)
    assert peak < 12 * 1024 * 1024, f"{peak / 1e6:.1f} MB traced while reading one 0.5 MB frame of a 32 MB file"


def test_over_the_pixel_limit_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(raster_mod, "MAX_PIXELS", 100 * 100)
    monkeypatch.setattr(dicom_mod, "MAX_PIXELS", 100 * 100)
    with pytest.raises(InputError, match="MEDIMG_MAX_PIXELS"):
        read_bytes(png_bytes((gradient(120, 100) * 255).astype(np.uint8)))
    with pytest.raises(InputError, match="MEDIMG_MAX_PIXELS"):
        read_bytes(dicom_bytes((gradient(120, 100) * 255).astype(np.uint8)))
    assert read_bytes(png_bytes((gradient(100, 100) * 255).astype(np.uint8))).pixels.shape == (100, 100)
