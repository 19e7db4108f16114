"""The lesion reaches every output: the JSON (peak, lesion, size category), the mask files of ``predict
--lesion-masks``, the batch table, the Analyse tab's stage box and outline, and the pathway by size category."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from pydicom import dcmread

from conftest import dicom_bytes, gradient, png_bytes
from medimg_demo.cli import main


def _us_dicom(tmp_path, spacing_cm: float | None = 0.03, side: int = 160):
    """A breast US DICOM (side x side px) calibrated through its ultrasound region (``spacing_cm`` per pixel)."""
    from pydicom.dataset import Dataset

    ds = dcmread(io.BytesIO(dicom_bytes((gradient(side, side) * 1000).astype(np.uint16), modality="US", spacing=None)))
    if spacing_cm is not None:
        r = Dataset()
        r.RegionDataType, r.PhysicalUnitsXDirection, r.PhysicalUnitsYDirection = 1, 3, 3
        r.PhysicalDeltaX = r.PhysicalDeltaY = spacing_cm
        ds.SequenceOfUltrasoundRegions = [r]
    path = tmp_path / "us.dcm"
    ds.save_as(path)
    return path


def test_json_carries_peak_lesion_and_size_category(tiny_breast_registry, monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(tiny_breast_registry))
    path = _us_dicom(tmp_path, 0.03)  # 160 px at 0.3 mm: the whole image is 48 mm wide, 67.9 mm corner to corner
    masks = tmp_path / "masks"
    assert main(["predict", str(path), "--json", "--lesion-masks", str(masks)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["type"]["label"] == "malignant"
    x, y = out["heatmap_peak_xy"]
    assert 0 <= x < 160 and 0 <= y < 160
    lesion = out["lesion"]
    assert lesion["bbox_xywh"] == [0, 0, 160, 160] and lesion["area_px"] == 160 * 160
    assert lesion["longest_diameter_px"] == pytest.approx(160 * 2 ** 0.5, abs=0.1)
    assert lesion["longest_diameter_mm"] == pytest.approx(0.3 * 160 * 2 ** 0.5, abs=0.1)
    assert out["size_category"]["label"] == "T3" and "estimate" in out["size_category"]["note"]
    assert "T3" in out["treatment"]["summary"]  # the pathway follows the size category
    assert lesion["mask_png"] == "lesion_mask_00000.png"  # named by position, never after the input file
    from PIL import Image

    mask = np.asarray(Image.open(masks / lesion["mask_png"]))
    assert mask.shape == (160, 160) and mask.dtype == np.uint8 and set(np.unique(mask)) == {255}
    # a second run into the same folder: its mask is numbered on, the first run's file is not rewritten (its JSON
    # would have named another image's mask)
    first = (masks / lesion["mask_png"]).read_bytes()
    assert main(["predict", str(path), "--json", "--lesion-masks", str(masks)]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["lesion"]["mask_png"] == "lesion_mask_00001.png" and (masks / lesion["mask_png"]).read_bytes() == first


def test_without_spacing_the_size_is_not_measurable(tiny_breast_registry, monkeypatch, tmp_path) -> None:
    from medimg_demo.web import analysis

    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(tiny_breast_registry))
    a = analysis.analyse(png_bytes((gradient(120, 100) * 255).astype(np.uint8)))
    j = a.prediction.to_json()
    assert j["lesion"]["longest_diameter_mm"] is None and j["size_category"] is None
    assert "not measurable" in a.stage_text
    assert "**Size category T" not in a.stage_text and j["treatment"]["summary"].startswith("Lesion suggested malignant:")
    assert a.view.lesion is not None and a.view.lesion.shape == (120, 100)
    with_outline = a.view.display(outline=True).image
    without = a.view.display(outline=False).image
    assert not np.array_equal(with_outline, without)  # the outline is drawn, and the toggle removes it


def test_brain_says_it_is_not_staged_by_imaging(monkeypatch, tmp_path) -> None:
    from conftest import _tiny_model
    from medimg_demo.web import analysis

    _tiny_model(tmp_path, "brain_mri.glioma_v0", "brain_mri", {"type": ["glioma", "meningioma", "no_tumor", "pituitary"]},
                call="glioma")
    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(tmp_path))
    a = analysis.analyse(png_bytes((gradient(96, 96) * 255).astype(np.uint8)))
    assert a.prediction.type_label == "glioma"
    assert "not staged by imaging" in a.stage_text.lower()
    assert "not staged by imaging" in a.prediction.to_json()["staging_note"].lower()


def test_batch_rows_carry_the_lesion_size(tiny_breast_registry, tmp_path) -> None:
    from medimg_demo.batch.score import BatchScorer

    scorer = BatchScorer("breast_us.tiny_v0", prefer_onnx=False, registry=tiny_breast_registry)
    blobs = [_us_dicom(tmp_path, 0.01).read_bytes(), png_bytes((gradient(80, 80) * 255).astype(np.uint8))]
    rows, _ = scorer.score(blobs, [{"path": "a.dcm"}, {"path": "b.png"}])
    assert rows[0]["status"] == "ok" and rows[0]["lesion_area_px"] == 160 * 160
    assert rows[0]["lesion_longest_diameter_mm"] == pytest.approx(0.1 * 160 * 2 ** 0.5, abs=0.1)
    assert rows[0]["size_category"] == "T2" and rows[0]["pixel_spacing_source"] == "file"  # 22.6 mm
    assert rows[1]["lesion_longest_diameter_mm"] is None and rows[1]["size_category"] is None
    assert rows[1]["pixel_spacing_source"] is None
    assert rows[1]["lesion_longest_diameter_px"] == pytest.approx(80 * 2 ** 0.5, abs=0.1)


def _breast_folder(tmp_path):
    """Three malignant images (a bright lesion, its mask) and a normal one, as a manifest's test split."""
    from PIL import Image

    folder = tmp_path / "breast"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rows = []
    for i, (label, box) in enumerate([("malignant", (10, 10, 30, 30)), ("malignant", (40, 50, 70, 75)),
                                      ("malignant", (5, 60, 25, 90)), ("normal", None)]):
        img = (np.random.default_rng(i).random((96, 100)) * 80).astype(np.uint8)
        mask = np.zeros((96, 100), np.uint8)
        if box:
            y0, x0, y1, x1 = box
            img[y0:y1, x0:x1] = 220
            mask[y0:y1, x0:x1] = 255
        Image.fromarray(img).save(folder / "images" / f"{i}.png")
        Image.fromarray(mask).save(folder / "masks" / f"{i}.png")
        rows.append({"image": f"images/{i}.png", "label": label, "split": "test", "mask": f"masks/{i}.png"})
    import pandas as pd

    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder


def test_lesion_metrics_measure_pointing_dice_and_erasure(tiny_breast_registry, tmp_path) -> None:
    import pandas as pd

    from medimg_demo.eval.lesions import evaluate_lesions
    from medimg_demo.models.registry import get_model

    folder = _breast_folder(tmp_path)
    cfg = get_model("breast_us.tiny_v0", tiny_breast_registry)
    res = evaluate_lesions(cfg, folder, pd.read_csv(folder / "manifest.csv"))
    cases = res.per_case
    assert len(cases) == 3 and set(cases["label"]) == {"malignant"}  # tumor cases only
    # the toy head outlines the whole image: Dice = 2|L| / (|L| + |image|)
    first = cases.iloc[0]
    assert first["dice"] == pytest.approx(2 * 400 / (400 + 9600))
    assert first["box_iou"] == pytest.approx(400 / 9600)
    x, y = int(first["peak_x"]), int(first["peak_y"])
    inside = 10 <= y < 30 and 10 <= x < 30
    assert bool(first["pointing_strict"]) == inside
    # the toy model calls everything malignant: erasing never changes its call
    assert not cases["erase_lesion_call_lost"].any() and cases["erase_elsewhere_call_kept"].all()
    assert not cases["erase_smooth_call_lost"].any()
    m = res.summary.set_index(["metric", "class"])["value"]
    assert m[("explain_erase_lesion_call_lost", "")] == 0.0 and m[("explain_erase_elsewhere_call_kept", "")] == 1.0
    assert m[("explain_erase_smooth_call_lost", "")] == 0.0
    assert m[("explain_lesion_dice_median", "malignant")] == pytest.approx(cases["dice"].median())


def test_with_posterior_adds_the_column_beneath_the_lesion_and_stops_at_the_edge() -> None:
    from medimg_demo.explain.lesion import with_posterior

    region = np.zeros((40, 30), bool)
    region[5:15, 10:20] = True  # 10 px high
    full = with_posterior(region, 1.0)
    assert full[5:25, 10:20].all() and full.sum() == 200  # the lesion and 10 px beneath it, nothing beside
    assert with_posterior(region, 0.0).sum() == 100 and not with_posterior(np.zeros_like(region), 1.0).any()
    low = np.zeros((40, 30), bool)
    low[30:38, 0:5] = True
    assert with_posterior(low, 1.0)[30:40, 0:5].all() and with_posterior(low, 1.0).sum() == 50  # clipped at row 40


def test_posterior_erasure_tells_a_call_that_reads_the_shadow_from_one_that_does_not(tiny_breast_registry, tmp_path) -> None:
    """A stand-in model that calls "malignant" from a bright band beneath the lesion (posterior enhancement):
    erasing the mask alone keeps its call; erasing the lesion with its posterior column loses it."""
    import dataclasses

    import pandas as pd

    from medimg_demo.eval.lesions import evaluate_lesions
    from medimg_demo.models.registry import get_model

    folder = _breast_folder(tmp_path)
    cfg = dataclasses.replace(get_model("breast_us.tiny_v0", tiny_breast_registry), lesion=None)

    bands = [(30, 45, 12, 28), (72, 90, 52, 73), (27, 40, 62, 88)]  # beneath each toy lesion (rows, columns)

    class ReadsTheShadow:
        def run(self, study, explain=False, gate=True):
            bright = any(study.pixels[y0:y1, x0:x1].mean() > 0.6 for y0, y1, x0, x1 in bands)  # pixels in [0, 1]
            return type("Out", (), {"type_label": "malignant" if bright else "normal", "heatmap": None})()

    from PIL import Image  # each lesion gets a bright posterior band, as a cyst's enhancement would be

    for i, (y0, y1, x0, x1) in enumerate(bands):
        img = np.array(Image.open(folder / "images" / f"{i}.png"))
        img[y0:y1, x0:x1] = 230
        Image.fromarray(img).save(folder / "images" / f"{i}.png")
    res = evaluate_lesions(cfg, folder, pd.read_csv(folder / "manifest.csv"), predictor=ReadsTheShadow())  # type: ignore[arg-type]
    cases = res.per_case
    assert cases["correct"].all()
    assert not cases["erase_lesion_call_lost"].any()  # the mask alone: the band remains, the call too
    assert cases["erase_posterior_call_lost"].all()  # with the column beneath: the band is gone
    assert cases["erase_posterior_elsewhere_call_kept"].dropna().all()
    m = res.summary.set_index(["metric", "class"])["value"]
    assert m[("explain_erase_posterior_call_lost", "")] == 1.0 and m[("explain_erase_lesion_call_lost", "")] == 0.0
