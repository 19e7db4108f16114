"""The Gradio app's predict function, without a browser: a real image works, a bad file is a gr.Error."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import pytest

from conftest import lung_test_image

import app
from medimg_demo.explain.display import DISPLAY_SIDE
from medimg_demo.web import handlers, view_store


def test_app_predict_on_real_lung_ct() -> None:
    img = lung_test_image()
    out = handlers.predict(str(img), None, 0.5)
    # /predict's first 13 outputs keep their places (API clients index them); the viewer's follow
    (type_scores, stage_scores, stage_md, pathway_md, original, overlay, info, raw, view, frame, notes, center,
     width) = out[:13]
    probs = raw["type"]["probabilities"]  # the JSON keeps the calibrated values; the screen shows them from 1% to 99%
    assert abs(sum(probs.values()) - 1) < 1e-4 and max(probs.values()) > 0.99  # so the cap applies to this scan
    assert sorted(type_scores.values()) == sorted(min(max(p, 0.01), 0.99) for p in probs.values())
    assert min(type_scores.values()) == 0.01  # the others share under 1%: none reads "0%", as if ruled out
    # the stage box says where its number comes from (UX review: "Stage IB 99%" read as a staging of the scan)
    assert stage_scores["label"].startswith("Stage, learned through the type: not a staging of this scan")
    stage_scores = stage_scores["value"]
    # readable names on screen ("Stage IIIA", "Squamous cell carcinoma"); the JSON keeps the raw labels
    assert stage_scores and set(stage_scores) == {"Stage IB", "Stage IIIA", "No stage (no tumor)"}
    assert set(type_scores) == {"Adenocarcinoma", "Large cell carcinoma", "Squamous cell carcinoma", "Normal"}
    assert raw["type"]["label"] in {"adenocarcinoma", "large_cell_carcinoma", "squamous_cell_carcinoma", "normal"}
    assert "learned through the type" in stage_md and "Stage group **I" in stage_md
    assert "Source:" in pathway_md and "not a treatment order" in pathway_md
    from PIL import Image

    from medimg_demo.explain.display import display_scale

    original, overlay = np.asarray(Image.open(original)), np.asarray(Image.open(overlay))
    assert original.shape == overlay.shape and original.ndim == 3 and max(original.shape[:2]) >= DISPLAY_SIDE
    assert not np.array_equal(original, overlay)
    assert out[13]["value"] == (out[4], out[5])  # the compare slider shows exactly these two pictures
    overview, slider = handlers.redraw(view, "File default", None, None, 0.0)
    pixels = view_store.lookup(view).pixels  # the page's state holds a key to the server's view
    picture_w = round(pixels.shape[1] * display_scale(pixels.shape))  # then the colour bar's panel
    redrawn = np.asarray(Image.open(slider["value"][1]))
    np.testing.assert_array_equal(redrawn[:, :picture_w], original[:, :picture_w])  # opacity 0: overlay = image
    assert not np.array_equal(redrawn[:, picture_w:], original[:, picture_w:])  # the colour bar beside the overlay
    assert frame["visible"] is False  # a PNG has one frame


@pytest.mark.parametrize("content", [b"", b"just some text\n" * 20, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"])
def test_app_bad_file_is_gradio_error(tmp_path, content: bytes) -> None:
    bad = tmp_path / "upload.png"
    bad.write_bytes(content)
    with pytest.raises(gr.Error):
        handlers.predict(str(bad), None, 0.5)


def test_an_upload_that_decodes_too_long_is_stopped_and_the_page_says_why(monkeypatch) -> None:
    from pydicom.uid import JPEG2000Lossless

    from medimg_demo.errors import InputError
    from medimg_demo.imaging import isolated
    from medimg_demo.imaging.jail_warm import dicom_of
    from medimg_demo.web.analysis import analyse

    if not isolated.enabled():
        pytest.skip("no fork or Unix sockets here")
    y, x = np.mgrid[:4096, :4096]
    upload = dicom_of(((x * 7 + y * 3) % 256).astype(np.uint8), JPEG2000Lossless)  # about 0.4 s to decode
    monkeypatch.setattr(isolated, "TIMEOUT_S", 0.05)  # the upload decodes in a child under this limit
    with pytest.raises(InputError, match="took longer than the 0.05 s"):
        analyse(upload)


def test_app_no_file_is_gradio_error() -> None:
    with pytest.raises(gr.Error, match="Upload a scan"):
        handlers.predict(None, None, 0.5)


def test_app_has_banner_and_predict_api() -> None:
    cfg = app.demo.config
    assert "not a medical device" in str(cfg).lower()
    names = [d.get("api_name") for d in cfg["dependencies"]]
    assert "predict" in names


def test_output_images_are_written_once_and_atomically(tmp_path, monkeypatch) -> None:
    """Same image from many requests at once: one content-addressed PNG, never a half-written one."""
    import threading

    from PIL import Image

    from medimg_demo.web import outputs as service

    monkeypatch.setenv("MEDIMG_STATE_DIR", str(tmp_path))
    rgb = (np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8)
    paths: list[str] = []
    threads = [threading.Thread(target=lambda: paths.append(service.png_file(rgb))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 1 and len(list((tmp_path / "public" / "images").iterdir())) == 1
    np.testing.assert_array_equal(np.asarray(Image.open(paths[0])), rgb)


def test_pruning_never_deletes_an_image_just_handed_out(tmp_path, monkeypatch) -> None:
    """An old PNG whose content is handed out again is kept by the next pruning; untouched old ones go."""
    import os
    import time

    from medimg_demo.web import outputs as service

    monkeypatch.setenv("MEDIMG_STATE_DIR", str(tmp_path))
    rgb = np.zeros((40, 40, 3), np.uint8)
    reused = service.png_file(rgb)
    stale = service.png_file(rgb + 1)
    two_hours_ago = time.time() - 7200
    for p in (reused, stale):
        os.utime(p, (two_hours_ago, two_hours_ago))
    monkeypatch.setattr(service, "_PNG_WRITES", 19)  # the next call is the 20th: it prunes
    assert service.png_file(rgb) == reused
    assert os.path.exists(reused) and not os.path.exists(stale)


def test_an_image_handed_out_while_the_reaper_prunes_is_not_deleted(tmp_path, monkeypatch) -> None:
    """The reaper's pass (another thread) and a request handing out the same old picture again: the picture must
    survive whichever comes first, so the age is judged and the file deleted with no hand-out in between."""
    import os
    import threading
    import time

    from medimg_demo.web import outputs as service
    from medimg_demo.web.expiry import expire_public

    monkeypatch.setenv("MEDIMG_STATE_DIR", str(tmp_path))
    rgb = np.full((40, 40, 3), 7, np.uint8)
    path = service.png_file(rgb)
    two_hours_ago = time.time() - 7200
    os.utime(path, (two_hours_ago, two_hours_ago))
    real_stat = Path.stat
    listed = threading.Event()

    def slow_stat(self, *args, **kwargs):  # the reaper has just read the old age: a request comes in now
        st = real_stat(self, *args, **kwargs)
        if self == Path(path) and threading.current_thread().name == "reaper" and not listed.is_set():
            listed.set()
            time.sleep(0.5)
        return st

    monkeypatch.setattr(Path, "stat", slow_stat)
    reaper = threading.Thread(target=expire_public, name="reaper")
    reaper.start()
    assert listed.wait(10)
    handed = service.png_file(rgb)  # the same content: the same file, handed out again
    reaper.join(10)
    assert handed == path and os.path.exists(handed)
    untouched = service.png_file(rgb + 1)
    os.utime(untouched, (two_hours_ago, two_hours_ago))
    expire_public()
    assert not os.path.exists(untouched) and os.path.exists(handed)


def test_hf_sign_in_button_only_when_the_deployer_asks(monkeypatch) -> None:
    """MEDIMG_HF_OAUTH=1 adds "Sign in with Hugging Face"; without it, no login button (a laptop)."""
    monkeypatch.delenv("MEDIMG_AUTH", raising=False)
    monkeypatch.delenv("MEDIMG_AUTH_FILE", raising=False)
    monkeypatch.setenv("MEDIMG_HF_OAUTH", "1")
    import gradio.routes

    # off a Space, Gradio's OAuth routes need an HF login (a network call): the test checks the layout only
    monkeypatch.setattr(gradio.routes, "attach_oauth", lambda fastapi_app: None)
    assert app.build_app().expects_oauth
    monkeypatch.delenv("MEDIMG_HF_OAUTH")
    assert not app.demo.expects_oauth


def test_model_switch_is_offered_only_for_a_bundled_suggestion() -> None:
    """The one-click switch after a refusal: shown for a bundled model, hidden (never an error) for any other input."""
    from medimg_demo.models.registry import list_models

    brain = next(m.id for m in list_models() if m.task == "brain_mri")
    shown = handlers.suggestion({"status": "refused", "suggested_model": brain})
    from medimg_demo.web.catalog import model_choices

    label = {mid: name for name, mid in model_choices()}[brain]
    assert shown["visible"] is True and shown["value"] == f"Switch to {label} and analyse"  # as the model list names it
    assert handlers.switch_model({"suggested_model": brain}) == brain
    for junk in (None, "x", [1], {"suggested_model": "../../etc"}, {"suggested_model": 7}):
        assert handlers.suggestion(junk)["visible"] is False
        assert handlers.switch_model(junk) == {"__type__": "update"}


def test_report_button_publishes_a_pdf_of_the_case_on_screen(tmp_path, monkeypatch) -> None:
    from medimg_demo.paths import public_dir
    from medimg_demo.web import downloads

    monkeypatch.setenv("MEDIMG_STATE_DIR", str(tmp_path))
    img = lung_test_image()
    with pytest.raises(gr.Error, match="Analyse the scan first"):
        downloads.report(str(img), None)
    from medimg_demo.web.analysis import analyse

    shown = analyse(str(img), "lung_ct.tf_efficientnet_lite0_v2").view
    pdf = Path(downloads.report(str(img), shown))
    assert pdf.is_file() and pdf.read_bytes().startswith(b"%PDF") and pdf.parent.parent.parent == public_dir()
    assert pdf.name.startswith("medimg-report_lung_ct_") and len(pdf.parent.name) == 32  # its name, a keyed folder
    assert img.stem not in pdf.name and not list((tmp_path / "work").rglob("*.pdf"))  # scratch copy removed
    from PIL import Image

    other = tmp_path / "other.png"  # another scan in the box than the one on screen (dropped in, not analysed)
    Image.open(img).convert("L").rotate(90, expand=True).save(other)
    with pytest.raises(gr.Error, match="not the scan on screen"):
        downloads.report(str(other), shown)


def test_served_pictures_are_capped_in_size_oldest_first(tmp_path) -> None:
    """A flood of redraws cannot fill the disk: above the budget the least recently handed-out pictures go first,
    never one handed out in the last minute."""
    import os
    import time

    from medimg_demo.web.outputs import _prune

    now = time.time()
    for i in range(5):  # handed out 10, 9, ... 6 minutes ago
        p = tmp_path / f"old{i}.png"
        p.write_bytes(b"x" * 1000)
        os.utime(p, (now - 600 + 60 * i, now - 600 + 60 * i))
    fresh = tmp_path / "fresh.png"
    fresh.write_bytes(b"x" * 5000)
    _prune(tmp_path, "*.png", max_age_s=3600, max_bytes=7000)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["fresh.png", "old3.png", "old4.png"]
    _prune(tmp_path, "*.png", max_age_s=3600, max_bytes=10)
    assert [p.name for p in tmp_path.glob("*.png")] == ["fresh.png"]  # just handed out: kept over the budget


def test_feedback_corrections_offer_the_shown_models_classes() -> None:
    """The Analyse tab's correction lists follow the result shown: readable names, the model's labels as values; no
    stage list for a model without a stage head; nothing to choose without a result or for an unknown model."""
    answered = {"model": "lung_ct.tf_efficientnet_lite0_v2", "type": {"label": "adenocarcinoma"},
                "stage": {"label": "Ib"}, "treatment": {"summary": "..."}, "heatmap_peak_xy": [3, 4]}
    type_q, lung_question, pathway_q, lung_type, lung_stage, rating = handlers.feedback_choices(answered)
    assert type_q["label"] == handlers.TYPE_QUESTION and pathway_q["visible"] and rating["visible"]
    assert lung_question["visible"]  # a stage was shown: the form asks about it
    assert ("Squamous cell carcinoma", "squamous_cell_carcinoma") in lung_type["choices"] and lung_type["value"] is None
    assert lung_stage["choices"] == [("Stage IIIA", "IIIa"), ("Stage IB", "Ib"), ("No stage (no tumor)", "none")]
    assert lung_stage["visible"]
    undecided = handlers.feedback_choices({"model": "lung_ct.tf_efficientnet_lite0_v2", "stage": None})
    assert not undecided[1]["visible"] and not undecided[4]["visible"]  # indeterminate: no stage shown, none asked
    breast = handlers.feedback_choices({"model": "breast_us.tf_efficientnet_lite1_v2", "type": {"label": "benign"}})
    assert [v for _, v in breast[3]["choices"]] == ["benign", "malignant", "normal"]
    assert breast[4]["choices"] == [] and not breast[4]["visible"]
    assert not breast[1]["visible"]  # no size category (no pixel spacing): no stage to agree with
    sized = {"model": "breast_us.tf_efficientnet_lite1_v2", "size_category": {"label": "T2"}}
    assert handlers.feedback_choices(sized)[1]["visible"]
    brain = handlers.feedback_choices({"model": "brain_mri.tf_efficientnet_lite1_v5", "stage": None})
    assert not brain[1]["visible"] and not brain[4]["visible"]  # "not staged by imaging": no stage question
    for shown in (None, {}, {"model": "no_such.model"}, {"model": ["lung_ct.tf_efficientnet_lite0_v2"]}):
        form = handlers.feedback_choices(shown)
        assert form[3]["choices"] == [] and form[0]["label"] == handlers.TYPE_QUESTION  # the form as it started
        assert all(update.get("visible", True) for update in form)


def test_a_result_that_named_no_type_is_asked_about_only_what_it_showed() -> None:
    """A refused result (no type, no pathway, no heatmap): the type question asks whether naming none was right and
    the pathway, stage and heatmap questions are hidden; the correction list still offers the model's types."""
    refused = {"model": "lung_ct.tf_efficientnet_lite0_v2", "status": "refused", "type": None, "stage": None,
               "treatment": None, "heatmap_peak_xy": None}
    type_q, stage_q, pathway_q, kinds, stages, rating = handlers.feedback_choices(refused)
    assert type_q["label"] == handlers.NO_TYPE_QUESTION
    assert not stage_q["visible"] and not pathway_q["visible"] and not rating["visible"] and not stages["visible"]
    assert ("Squamous cell carcinoma", "squamous_cell_carcinoma") in kinds["choices"]


def test_the_api_schema_takes_labels_as_text() -> None:
    """The correction lists are empty until a result names its model: the API schema must still say "a string"
    (a client built from an empty choice list would refuse every label)."""
    info = app.demo.get_api_info()["named_endpoints"]
    for endpoint in ("/feedback", "/session_feedback"):
        kinds = {p["parameter_name"]: p["python_type"]["type"] for p in info[endpoint]["parameters"]}
        assert kinds["corrected_type"] == kinds["corrected_stage"] == "str", (endpoint, kinds)


def test_a_stage_answer_is_kept_only_where_a_stage_was_shown(tmp_path: Path) -> None:
    """Brain MRI is not staged by imaging, and breast shows a size category only with a pixel spacing: an answer to
    a stage question about a result that showed none is not stored (the summary counted it as agreement); nor an
    answer about a pathway or a heatmap a result did not show."""
    from medimg_demo.feedback import read_all
    from medimg_demo.web import session

    db = tmp_path / "fb.sqlite"
    shown = {
        "brain": {"model": "brain_mri.tf_efficientnet_lite1_v5", "stage": None, "size_category": None,
                  "type": {"label": "glioma", "probabilities": {"glioma": 0.9, "meningioma": 0.05, "no_tumor": 0.03,
                                                                "pituitary": 0.02}}},
        "lung": {"model": "lung_ct.tf_efficientnet_lite0_v2", "stage": {"label": "Ib", "probabilities": {"Ib": 1.0}},
                 "type": {"label": "adenocarcinoma", "probabilities": {"adenocarcinoma": 1.0}},
                 "treatment": {"summary": "surgery"}, "heatmap_peak_xy": [10, 20]},
        "lung_undecided": {"model": "lung_ct.tf_efficientnet_lite0_v2", "stage": None, "status": "indeterminate",
                           "type": {"label": None, "probabilities": {"adenocarcinoma": 0.5, "normal": 0.5}}},
    }
    for name, prediction in shown.items():
        pid = session.record_prediction({**prediction, "image_sha256": "ab" * 32}, db=db)
        stage = "IIIa" if name.startswith("lung") else None  # a corrected stage, sent by an API client
        session.feedback_from_prediction(pid, "reader07", session_id=name, type_agree="Agree", stage_agree="Disagree",
                                         corrected_stage=stage, pathway_agree="Agree", heatmap_plausibility=4, db=db)
    rows = read_all(db).set_index("session_id")
    assert rows.loc["brain", "stage_agree"] is None or np.isnan(rows.loc["brain", "stage_agree"])
    assert rows.loc["lung", "stage_agree"] == 0 and rows.loc["brain", "type_agree"] == 1
    assert rows.loc["lung", "corrected_stage"] == "IIIa"
    undecided = rows.loc["lung_undecided"]  # no stage shown: neither an answer nor a correction about one
    assert pd.isna(undecided["stage_agree"]) and pd.isna(undecided["corrected_stage"])
    assert rows.loc["lung", "pathway_agree"] == 1 and rows.loc["lung", "heatmap_plausibility"] == 4
    for name in ("brain", "lung_undecided"):  # no pathway, no heatmap shown: neither answer stored
        assert pd.isna(rows.loc[name, "pathway_agree"]) and pd.isna(rows.loc[name, "heatmap_plausibility"]), name


def test_the_feedback_form_shows_only_with_a_recorded_result() -> None:
    """Before any analysis (or for a result the store could not record) there is nothing to answer: no form."""
    assert handlers.feedback_shown({"model": "lung_ct.tf_efficientnet_lite0_v2", "prediction_id": "abc123"})["visible"]
    for shown in (None, {}, "abc123", {"model": "lung_ct.tf_efficientnet_lite0_v2", "prediction_id": None},
                  {"prediction_id": "  "}, {"prediction_id": ["abc"]}):
        assert not handlers.feedback_shown(shown)["visible"], shown


def test_model_list_names_versions_readably_and_uniquely() -> None:
    """The dropdown cut "Breast ultrasound: breast_us.tf_efficientnet_lite1_v2" off mid-id: short names, each task's
    default first and marked, every label naming one model."""
    from medimg_demo.models.registry import task_models
    from medimg_demo.web.catalog import model_choices, model_label

    choices = model_choices()
    labels = [label for label, _ in choices]
    assert len(set(labels)) == len(labels) and all(len(label) <= 32 for label in labels), labels
    served = {m.id for m in task_models()}
    assert {mid for label, mid in choices if label.endswith("(default)")} == served
    assert {mid: label for label, mid in choices}["breast_us.tf_efficientnet_lite1_v3"] == "Breast ultrasound v3 (default)"
    assert {mid: label for label, mid in choices}["breast_us.tf_efficientnet_lite1_v2"] == "Breast ultrasound v2"
    assert model_label("lung_ct.custom_model", "Lung CT", False) == "Lung CT: lung_ct.custom_model"  # no version: its id
    brain = [label for label, _ in choices if label.startswith("Brain MRI")]
    assert brain == sorted(brain, key=lambda b: (not b.endswith("(default)"), -int(b.split(" v")[1].split()[0])))


def test_a_frame_beyond_the_file_keeps_the_case_and_names_the_range() -> None:
    """A typed frame number is checked against the shown file before anything clears; the box goes back."""
    import dataclasses

    from medimg_demo.web import viewer
    from medimg_demo.web.analysis import View

    view = View(pixels=np.zeros((8, 8)), values=None, invert=False, heatmap=None, spacing_mm=None,
                default_window=None, modality="CT", frame_index=2, n_frames=5)
    for ok in (1, 5, 3.0, None, ""):
        assert viewer.check_frame(view, ok) is None
    for bad in (0, 6, 2.5, float("nan"), "3", 10**400, True):
        with pytest.raises(gr.Error, match="has 5 frames: enter a whole number from 1 to 5 .frame 3 is shown"):
            viewer.check_frame(view, bad)
    for beyond in (9, 0, 2.5):  # a number the file does not have: the box goes back to the frame shown
        assert viewer.back_if_beyond(view, beyond)["value"] == 3
    for kept in (4, None, ""):  # a frame of the file, or an empty box: as typed (the Analyse button may read it)
        assert viewer.back_if_beyond(view, kept) == gr.skip()
    assert viewer.check_frame(None, 99) is None  # no result kept: the analysis itself checks the number
    # leaving the box (Tab, a click elsewhere; Enter leaves it too): another frame is checked as above and shown
    assert viewer.left_frame(view, 5) is None
    with pytest.raises(gr.Error, match="has 5 frames"):
        viewer.left_frame(view, 9)
    for same in (3, 3.0, None, ""):  # the frame shown, or an empty box: nothing to show, no message (the box goes back)
        with pytest.raises(gr.Error) as stopped:
            viewer.left_frame(view, same)
        assert not stopped.value.visible
    with pytest.raises(gr.Error) as stopped:  # no result on screen: the next Analyse reads the box
        viewer.left_frame(None, 4)
    assert not stopped.value.visible
    assert viewer.back_if_beyond(None, 9) == gr.skip()
    key = view_store.keep(dataclasses.replace(view, frame_index=0))
    with pytest.raises(gr.Error, match="frame 1 is shown"):
        viewer.check_frame(key, 7)
