"""The Analyse tab's viewer without a browser: its wiring in the app, the blanking of every output, zoom handlers."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import numpy as np

from medimg_demo.explain.display import DISPLAY_SIDE
from PIL import Image

from conftest import lung_test_image

import app
from medimg_demo.web import analysis, handlers, viewer
from medimg_demo.web.analysis import View, stage_name


def _components() -> dict[int, dict]:
    return {c["id"]: c for c in app.demo.config["components"]}


def _dependency(api_name: str) -> dict:
    return next(d for d in app.demo.config["dependencies"] if d.get("api_name") == api_name)


def test_compare_slider_is_in_the_app_without_a_share_button() -> None:
    comps = _components()
    sliders = [c for c in comps.values() if c["type"] == "imageslider"]
    assert len(sliders) == 1 and sliders[0]["props"]["elem_id"] == "viewer"
    with_buttons = [c for c in comps.values() if c["props"].get("buttons") is not None]
    assert sliders[0] in with_buttons
    assert all("share" not in str(c["props"]["buttons"]) for c in with_buttons)  # issue 12: no share anywhere


def test_clearing_blanks_every_output_of_an_analysis() -> None:
    """The clear handler fills exactly the outputs /predict fills: nothing of a previous case can stay behind."""
    outputs = _dependency("predict")["outputs"]
    n = 13 + len(viewer.VIEWER_OUTPUTS)
    assert len(outputs) == n
    assert len(handlers.clear_outputs()) == len(viewer.clear_for_model()) == len(viewer.clear_for_file()) == n
    comps = _components()
    by_id = {cid: comps[cid]["props"].get("elem_id") for cid in outputs}
    cleared = dict(zip(outputs, handlers.clear_outputs()))
    for elem in ("report-file", "deid-file"):
        cid = next(i for i, e in by_id.items() if e == elem)
        assert cleared[cid]["value"] is None and cleared[cid]["visible"] is False  # no stale report or copy
    viewer_id = next(i for i, e in by_id.items() if e == "viewer")
    assert cleared[viewer_id]["value"] is None
    assert "Analyse" in viewer.clear_for_model()[10]  # a changed model says what to do next
    # leaving the model list sends its value again (Gradio's blur): the same model leaves the case on screen
    same, other = viewer.model_picked("lung", "lung"), viewer.model_picked("brain", "lung")
    assert len(same) == len(other) == n + 1 and same[-1] == "lung" and other[-1] == "brain"
    assert all(o == gr.skip() for o in same[:-1]) and "Analyse" in other[10]
    assert handlers.clear_outputs()[9] == {"__type__": "update"}  # before an analysis: the frame asked for stays
    assert viewer.clear_for_file()[9]["visible"] is False  # a removed or refused file: its frame box goes
    # the events that change the file or the model all blank the outputs
    model_id = next(i for i, c in comps.items() if c["props"].get("elem_id") == "analyse-model")
    triggers = {tuple(t) for d in app.demo.config["dependencies"] if d["outputs"][:len(outputs)] == outputs
                for t in d["targets"]}  # the model list's event also remembers the model (viewer.model_picked)
    assert (model_id, "input") in triggers
    upload_id = next(i for i, c in comps.items() if c["props"].get("label") == "Scan")
    assert (upload_id, "clear") in triggers


def test_a_click_on_the_overview_centres_the_zoom_on_that_scan_pixel() -> None:
    view = View(pixels=np.zeros((128, 256), np.float32), values=None, invert=False, heatmap=None, spacing_mm=None,
                default_window=None, modality=None)
    # the overview is the whole scan at display size (256 px -> DISPLAY_SIDE px: k display pixels per scan pixel)
    k = DISPLAY_SIDE / 256
    point, centre, zoom = viewer.pick_point(view, "1x", SimpleNamespace(index=[100 * k, 25 * k]))
    assert point == (25.0, 100.0) and centre == "Chosen point" and zoom == "2x"  # zoomed in, not left at 1x
    assert viewer.pick_point(view, "4x", SimpleNamespace(index=[5000, -3]))[0] == (0.0, 255.0)  # kept inside
    assert viewer.pick_point(None, "1x", SimpleNamespace(index=[1, 1]))[0] == {"__type__": "update"}  # no case


def test_zoom_redraws_the_slider_from_the_scan_and_outlines_the_region() -> None:
    out = handlers.predict(str(lung_test_image()), None, 0.45)
    view = out[8]
    overview, slider = viewer.redraw(view, "File default", None, None, 0.45, "4x", "Heatmap peak", None)
    zoomed = [np.asarray(Image.open(p)) for p in slider["value"]]
    whole = np.asarray(Image.open(out[4]))
    assert zoomed[0].shape == whole.shape and not np.array_equal(zoomed[0], whole)
    assert overview != out[5]  # the overview now outlines the zoomed region
    assert viewer.zoom_factor("4x") == 4 and viewer.zoom_factor("3x") == viewer.zoom_factor(None) == 1


def test_stage_names_read_as_a_clinician_writes_them() -> None:
    assert stage_name("IIIa") == "Stage IIIA" and stage_name("Ib") == "Stage IB"
    assert stage_name("none") == "No stage (no tumor)"


def test_a_refused_image_shows_no_empty_type_or_stage_box_and_says_there_is_no_heatmap() -> None:
    import csv

    from conftest import DATA_ROOT

    manifest = DATA_ROOT / "brain_mri" / "manifest.csv"
    if not manifest.is_file():
        import pytest

        pytest.skip("brain data not found")
    with open(manifest, newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["split"] == "test")
    out = handlers.predict(str(manifest.parent / row["image"]), "lung_ct.tf_efficientnet_lite0_v2", 0.45)
    assert out[7]["status"] == "refused" and "Not an image for this model" in out[10]
    extra = dict(zip(viewer.VIEWER_OUTPUTS, out[13:]))
    assert extra["type_box"]["visible"] is False and extra["stage_box"]["visible"] is False
    assert extra["viewer"]["label"] == viewer.NO_HEATMAP_LABEL and extra["deid_btn"]["visible"] is False
    assert extra["opacity"]["interactive"] is False and "no heatmap" in extra["opacity"]["label"]
    assert dict(zip(viewer.VIEWER_OUTPUTS, handlers.clear_outputs()[13:]))["opacity"]["interactive"] is True
    assert extra["record"] == ""  # no call, no test record
    # no compare handle (it compared the image with itself) and no "Heatmap peak" to centre a zoom on
    assert extra["viewer"]["elem_classes"] == [viewer.NO_HEATMAP_CLASS]
    assert extra["centre"]["choices"] == analysis.CENTRE_CHOICES[1:] and extra["centre"]["value"] == "Image centre"
    cleared = dict(zip(viewer.VIEWER_OUTPUTS, handlers.clear_outputs()[13:]))
    assert cleared["viewer"]["elem_classes"] == [] and cleared["centre"]["choices"] == analysis.CENTRE_CHOICES


def test_a_call_shows_its_test_record_and_a_no_tumor_map_says_it_is_no_lesion() -> None:
    """A call came with no word of what it had been on the test split (2 of lung's 9 "Normal" test calls were
    cancers), and the red map of a "Normal" call read as a lesion (clinician walkthrough, thirty-ninth session)."""
    import csv

    import pytest

    from conftest import DATA_ROOT

    manifest = DATA_ROOT / "lung_ct" / "manifest.csv"
    if not manifest.is_file():
        pytest.skip("lung data not found")
    with open(manifest, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    for label, heading in (("normal", viewer.NO_TUMOR_HEATMAP_LABEL), ("adenocarcinoma", viewer.VIEWER_LABEL)):
        row = next(r for r in rows if r["label"] == label)
        out = handlers.predict(str(manifest.parent / row["image"]), "lung_ct.tf_efficientnet_lite0_v2", 0.45)
        assert out[7]["status"] == "ok" and out[7]["type"]["label"] == label, out[7]
        extra = dict(zip(viewer.VIEWER_OUTPUTS, out[13:]))
        assert extra["viewer"]["label"] == heading and extra["viewer"]["elem_classes"] == []
        assert extra["centre"]["value"] == "Heatmap peak" and extra["centre"]["choices"] == analysis.CENTRE_CHOICES
        name = "Normal" if label == "normal" else "Adenocarcinoma"
        assert f"Grad-CAM for '{name}'" in out[6], out[6]  # the class by the name the call shows, not its label
        assert "this model called" in extra["record"] and f"*{name}*: they were" in extra["record"]
        assert "not a diagnosis" in extra["record"]


def test_a_window_that_cannot_be_applied_says_so(tmp_path) -> None:  # noqa: ANN001
    """A CT preset on a PNG, or a manual width of 0, left the picture unchanged with nothing said."""
    import warnings

    from conftest import dicom_bytes, gradient

    def notes(view, window: str, center: float | None, width: float | None) -> list[str]:  # noqa: ANN001
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            viewer.redraw(view, window, center, width, 0.45, "1x", "Heatmap peak", None)
        return [str(w.message) for w in caught]

    png_view = handlers.predict(str(lung_test_image()), None, 0.45)[8]
    assert any("need a DICOM" in n for n in notes(png_view, "Bone", None, None))
    assert not notes(png_view, "File default", None, None)
    dcm = tmp_path / "ct.dcm"
    dcm.write_bytes(dicom_bytes((gradient(96, 96) * 3000).astype(np.uint16), slope=1, intercept=-1024, window=(40, 400)))
    ct_view = handlers.predict(str(dcm), None, 0.45)[8]
    assert any("width above 0" in n for n in notes(ct_view, "Manual", 40, 0))
    assert not notes(ct_view, "Manual", 40, 400) and not notes(ct_view, "Bone", None, None)


def test_auto_names_the_model_it_picked_and_none_when_no_model_fits(tmp_path) -> None:  # noqa: ANN001
    """With Auto, a photo refused by every model was shown as "Model lung_ct..." in the info line, while the notes said
    that none fits (clinician walkthrough, thirty-ninth session)."""
    import numpy as np
    from PIL import Image

    photo = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(photo)
    out = handlers.predict(str(photo), "auto", 0.45)
    assert out[7]["status"] == "refused" and out[6].startswith("Auto: no bundled model fits this image"), out[6]
    assert "lung_ct" not in out[6]
    # the card does not speak of "this model" when none was chosen, and the notes name the nearest and how far
    assert "Not an image for any bundled model" in out[10] and "The nearest is the " in out[10]
