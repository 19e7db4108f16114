"""A data set's own image, copied as PNG, is measured with the spacing its manifest states; nothing else is."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import dicom_bytes, gradient
from medimg_demo.imaging import known_spacing
from medimg_demo.imaging.decode import read_bytes
from medimg_demo.predict import Prediction


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def data_root(tmp_path, monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.setenv("MEDIMG_DATA_DIR", str(tmp_path))
    known_spacing._index.cache_clear()
    yield tmp_path
    known_spacing._index.cache_clear()


def test_a_manifest_image_gets_its_spacing_and_an_edited_copy_does_not(data_root) -> None:
    rng = np.random.default_rng(0)
    scan, other = ((rng.random((64, 64)) * 255).astype(np.uint8) for _ in range(2))
    keys = [known_spacing.pixel_key(a.astype(np.float32) / 255) for a in (scan, other)]
    (data_root / "brain_mri").mkdir()
    pd.DataFrame({"image": ["a.png", "b.png"], "sha256": keys, "pixel_spacing_mm": [0.98, None]}).to_csv(
        data_root / "brain_mri" / "manifest.csv", index=False)
    study = read_bytes(_png(scan))
    assert study.pixel_spacing_mm == (0.98, 0.98) and study.spacing_source == known_spacing.SOURCE
    edited = scan.copy()
    edited[0, 0] ^= 1
    assert read_bytes(_png(edited)).pixel_spacing_mm is None  # one grey level off: not that image
    assert read_bytes(_png(other)).pixel_spacing_mm is None  # in the manifest without a spacing (another source)
    dicom = read_bytes(dicom_bytes((gradient(64, 64) * 1000).astype(np.uint16), slope=1, intercept=-1024,
                                   window=(40, 400)))
    as_if_known = known_spacing.with_known_spacing(replace(dicom, pixels=study.pixels, pixel_spacing_mm=None))
    assert as_if_known.pixel_spacing_mm is None  # a DICOM is never given a manifest's spacing, even with its pixels


def test_no_data_folder_means_no_spacing_and_no_hashing(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEDIMG_DATA_DIR", str(tmp_path / "missing"))
    monkeypatch.setattr(known_spacing, "pixel_key", lambda pixels: pytest.fail("hashed without a data set"))
    known_spacing._index.cache_clear()
    try:
        assert read_bytes(_png(np.full((64, 64), 7, np.uint8))).pixel_spacing_mm is None
    finally:
        known_spacing._index.cache_clear()


def test_the_json_names_where_the_spacing_came_from() -> None:
    base = dict(model_id="x", task="brain_mri", type_label=None, type_probs=None, stage_label=None, stage_probs=None,
                stage_note=None, treatment=None, image=np.zeros((4, 4)), heatmap=None, heatmap_class=None,
                image_sha256="0" * 64, modality=None, status="refused", reason="r")
    assert Prediction(**base, pixel_spacing_mm=None).to_json()["pixel_spacing_source"] is None
    assert Prediction(**base, pixel_spacing_mm=(0.5, 0.5)).to_json()["pixel_spacing_source"] == "file"
    named = Prediction(**base, pixel_spacing_mm=(0.98, 0.98), pixel_spacing_source=known_spacing.SOURCE)
    assert named.to_json()["pixel_spacing_source"] == "data set manifest"
