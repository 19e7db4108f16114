"""Case report PDF: notice, answer, pins and metrics on a real lung CT image; no identifier from a DICOM that carries
fake PHI (text, decoded streams, metadata); a refused image gets its reason and no pathway; the CLI and the app's
report action."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import dicom_bytes, gradient, lung_test_image, png_bytes
from medimg_demo.errors import ReportError
from medimg_demo.models.registry import get_model
from medimg_demo.notice import DISCLAIMER
from medimg_demo.report.pdf import METADATA, report_file, write_report
from medimg_demo.tasks import get_task, stage_name
from medimg_demo.treatment import PATHWAY_NOTICE

pypdf = pytest.importorskip("pypdf", reason="pypdf (requirements-dev.txt) reads the report text")

LUNG_MODEL = "lung_ct.tf_efficientnet_lite0_v2"
#: What the DICOM fixture carries (conftest.dicom_bytes(phi=True)) and what a careless report could copy.
SECRETS = ("Doe^Jane", "Jane", "Secret", "PID-998877", "998877", "19600101", "1960-01-01", "Hidden Road", "Nowhere")


def _flat(text: str) -> str:
    return " ".join(text.split())


def _read(path: Path) -> tuple[str, bytes, "pypdf.PdfReader", int]:
    """(extracted text, whitespace-normalised; the file's bytes plus every object with its stream decoded; the
    reader; the number of objects read): text in a PDF is compressed and glyph-encoded, so the raw file alone
    would hide an identifier from a byte search."""
    reader = pypdf.PdfReader(path)
    text = _flat("\n".join(page.extract_text() for page in reader.pages))
    raw = [path.read_bytes()]
    ids = {i for table in reader.xref.values() for i in table} | set(reader.xref_objStm)
    for num in sorted(ids):
        obj = reader.get_object(num)
        if isinstance(obj, pypdf.generic.StreamObject):
            raw.append(obj.get_data())
        raw.append(repr(obj).encode("utf-8", "replace"))
    return text, b"\n".join(raw), reader, len(ids)


@pytest.fixture(scope="module")
def lung_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("report") / "Doe_Jane_case.pdf"  # a careless name: it must not reach the PDF
    pred = report_file(lung_test_image(), out, LUNG_MODEL)
    return out, pred


def test_lung_report_has_notice_answer_pathway_pins_and_metrics(lung_report) -> None:
    out, pred = lung_report
    text, raw, reader, _ = _read(out)
    assert 1 <= len(reader.pages) <= 2
    assert _flat(DISCLAIMER) in text and _flat(PATHWAY_NOTICE) in text
    cfg = get_model(LUNG_MODEL)
    assert pred.status == "ok" and pred.type_label == "adenocarcinoma"
    # as the screens show them: whole percent from 1% to 99% (the report had printed "> 99.9%" beside a screen's 99%)
    shown = {k: f"{round(min(max(p, 0.01), 0.99) * 100)}%" for k, p in pred.type_probs.items()}
    assert f"Status: answer given - Adenocarcinoma ({shown['adenocarcinoma']})" in text
    from medimg_demo.eval.call_record import call_record

    rec = call_record(cfg, "adenocarcinoma")  # what this call was on the test split, under it
    assert f"this model called {rec.called} images Adenocarcinoma: they were {rec.truth[0][1]} Adenocarcinoma" in text
    for label in pred.type_probs:  # every calibrated probability, by its readable name
        assert f"{get_task('lung_ct').label_name(label)} {shown[label]}" in text
    assert "100" not in re.findall(r"(\d+)(?:\.\d+)?%", text) and not re.search(r"\d\.\d%|< 0\.1%", text)
    assert "in whole percent from 1% to 99% as the screens show them" in text
    assert "Squamous cell carcinoma" in text and "squamous_cell_carcinoma" not in text
    assert f"Stage group {stage_name(pred.stage_label)}" in text and "learned through the type" in text
    assert _flat(pred.treatment.summary) in text and _flat(pred.treatment.source) in text
    assert LUNG_MODEL in text and cfg.weights_sha256[:12] in text and "Report date (UTC)" in text
    assert "1 of 1 (a single image)" in text and "0-based" not in text and "Warnings none" in text
    m = pd.read_csv(cfg.folder / "metrics" / "metrics.csv", keep_default_na=False, na_values=[""])
    row = m[(m.metric == "macro_auc")].iloc[0]
    assert f"Macro AUC (one vs rest) {row.value:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]" in text
    sens = m[(m.metric == "sensitivity") & (m["class"] == "normal")].iloc[0]
    assert f"Sensitivity: Normal {sens.value:.3f} [{sens.ci_low:.3f}, {sens.ci_high:.3f}]" in text
    assert "Accuracy" in text and "Expected calibration error (ECE)" in text
    meta = reader.metadata
    assert meta.title == METADATA["title"] and meta.author == METADATA["author"] and meta.subject == METADATA["subject"]
    assert b"Doe_Jane" not in raw and "Doe_Jane" not in text  # the output file name is nowhere in the file


def test_dicom_with_phi_leaves_no_identifier_in_the_report(tmp_path) -> None:
    import pydicom

    data = dicom_bytes((gradient(128, 128) * 1500).astype(np.uint16), slope=1, intercept=-1024, window=(-600, 1500),
                       phi=True)
    src = tmp_path / "Doe^Jane^Secret_PID-998877.dcm"
    src.write_bytes(data)
    uid = str(pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID)
    out = tmp_path / "Secretia_PID-998877.pdf"
    pred = report_file(src, out, LUNG_MODEL)
    text, raw, reader, n_objects = _read(out)
    assert n_objects > 10 and len(raw) > 2 * out.stat().st_size  # every object was read and its stream decoded
    assert "modality CT" in text and "0.7 x 0.7 mm" in text and "128 x 128 px" in text  # the safe facts do go in
    assert f"Status: {'answer given' if pred.status == 'ok' else pred.status}" in text
    for secret in (*SECRETS, uid, src.name, out.name):
        assert secret not in text, secret
        assert secret.encode() not in raw, secret
        for value in reader.metadata.values():
            assert secret not in str(value), secret


def test_refused_image_prints_its_reason_and_no_pathway(tmp_path) -> None:
    noise = tmp_path / "noise.png"
    noise.write_bytes(png_bytes(np.random.default_rng(5).integers(0, 256, (128, 128), dtype=np.uint8)))
    out = tmp_path / "r.pdf"
    pred = report_file(noise, out, LUNG_MODEL)
    assert pred.status == "refused" and pred.treatment is None
    text, _, _, _ = _read(out)
    assert "Status: refused" in text and _flat(pred.reason)[:60] in text
    assert "No pathway" in text and "Not assessed: the model gave no answer" in text
    assert _flat(PATHWAY_NOTICE) not in text and "Source:" not in text and "Stage group" not in text
    assert "Calibrated probability" not in text and "No heatmap" in text
    assert _flat(DISCLAIMER) in text and "Macro AUC" in text  # notice and measured metrics still there
    assert "Case report - Lung CT" in text and "(Auto:" not in text
    # with Auto and no model accepting it, the report was titled by the default model's task as if it were one
    auto = report_file(noise, tmp_path / "a.pdf", "auto")
    text, _, _, _ = _read(tmp_path / "a.pdf")
    assert auto.status == "refused" and auto.by_auto and "The nearest is the" in auto.reason
    assert "Case report - no bundled model fits this image" in text
    assert f"{auto.model_id} (Auto: no bundled model accepts the image)" in text


def test_indeterminate_case_prints_its_reason_and_probabilities_but_no_pathway(lung_report, tmp_path) -> None:
    from dataclasses import replace

    from medimg_demo.report.pdf import StudyInfo

    _, pred = lung_report
    unsure = replace(pred, status="indeterminate", reason="Indeterminate: the model is not sure between A and B.",
                     treatment=None, stage_label=None, stage_probs=None, stage_note=None)
    out = write_report(unsure, StudyInfo(width=pred.image.shape[1], height=pred.image.shape[0]), tmp_path / "u.pdf")
    text, _, _, _ = _read(out)
    assert "Status: indeterminate - Indeterminate: the model is not sure between A and B." in text
    assert "Calibrated probability" in text and "No pathway" in text and _flat(pred.treatment.source) not in text
    assert _flat(PATHWAY_NOTICE) not in text and "Not assessed: the model gave no answer" in text


def test_a_no_tumor_call_is_not_staged_and_its_pathway_rules_nothing_out(lung_report, tmp_path) -> None:
    """A brain no-tumor report had explained WHO grading and a breast normal one the AJCC size rule (clinician
    walkthrough): a call of no tumor has nothing to stage, and its pathway does not rule a tumor out."""
    from dataclasses import replace

    from medimg_demo.report.pdf import StudyInfo
    from medimg_demo.treatment import pathway

    _, pred = lung_report
    brain = get_model("brain_mri.tf_efficientnet_lite1_v5")
    none = replace(pred, task="brain_mri", model_id=brain.id, type_label="no_tumor", stage_label=None,
                   stage_probs=None, stage_note=None, size_category=None, lesion=None, lesion_mask=None,
                   type_probs={"no_tumor": 0.97, "glioma": 0.01, "meningioma": 0.01, "pituitary": 0.01},
                   treatment=pathway("brain_mri", "no_tumor"))
    out = write_report(none, StudyInfo(width=pred.image.shape[1], height=pred.image.shape[0]), tmp_path / "n.pdf",
                       brain)
    text, _, _, _ = _read(out)
    assert "No lesion staged: the model's call is No tumor." in text
    assert _flat(get_task("brain_mri").staging_note) not in text and "does not rule one out" in text
    lung_probs = {"normal": 0.97, "adenocarcinoma": 0.01, "large_cell_carcinoma": 0.01, "squamous_cell_carcinoma": 0.01}
    normal = replace(pred, type_label="normal", stage_label="none", type_probs=lung_probs,
                     stage_probs={"none": 0.97, "Ib": 0.02, "IIIa": 0.01},
                     treatment=pathway("lung_ct", "normal", "none"))
    text, _, _, _ = _read(write_report(normal, StudyInfo(width=pred.image.shape[1], height=pred.image.shape[0]),
                                       tmp_path / "l.pdf"))
    assert "No lesion staged: the model's call is Normal." in text and "Stage group" not in text  # not "No stage 97%"


def test_unwritable_output_is_a_report_error(lung_report, tmp_path) -> None:
    from medimg_demo.report.pdf import StudyInfo

    _, pred = lung_report
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ReportError, match="writable output folder"):
        write_report(pred, StudyInfo(width=1, height=1), blocker / "case.pdf")
    assert not list(tmp_path.glob("**/*.partial"))


def test_outline_hook_draws_the_lesion_edge() -> None:
    from PIL import Image

    from medimg_demo.report.images import OUTLINE_RGB, pictures

    img = gradient(64, 64)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 20:40] = True
    first, over = pictures(img, img, (0.5, 0.5), outline=mask)
    for png in (first, over):
        arr = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        assert arr.shape[:2] == (320, 320)  # small scans are enlarged 5x for print
        green = np.all(arr == OUTLINE_RGB, axis=2)
        assert green[100:200, 100].all() and not green[105:195, 105:195].any()  # the edge, not the inside
    plain, _ = pictures(img, None, None)
    assert not np.all(np.asarray(Image.open(io.BytesIO(plain)).convert("RGB")) == OUTLINE_RGB, axis=2).any()


def test_cli_report_writes_pdf_and_json_and_exits_2_on_a_bad_file(tmp_path, capsys) -> None:
    from medimg_demo.cli import main

    out = tmp_path / "case.pdf"
    assert main(["report", str(lung_test_image()), "--model", LUNG_MODEL, "--out", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["model"] == LUNG_MODEL and d["frame_index"] == 0 and "warnings" in d and d["disclaimer"] == DISCLAIMER
    assert out.read_bytes().startswith(b"%PDF-")
    bad = tmp_path / "notes.dcm"
    bad.write_text("not an image at all")
    assert main(["report", str(bad), "--out", str(tmp_path / "bad.pdf")]) == 2
    assert not (tmp_path / "bad.pdf").exists()


def test_report_for_analysis_writes_a_random_name_in_the_scratch_folder(tmp_path, monkeypatch) -> None:
    """The scratch copy has a random name; the download name says the task and the report's own time, and nothing
    of the upload's."""
    import re

    from medimg_demo.web.analysis import analyse
    from medimg_demo.web.report import report_for_analysis

    monkeypatch.setenv("MEDIMG_STATE_DIR", str(tmp_path / "state"))
    path, name = report_for_analysis(analyse(lung_test_image(), LUNG_MODEL))
    assert path.parent == tmp_path / "state" / "work" / "reports" and path.suffix == ".pdf"
    assert len(path.stem) == 32 and lung_test_image().stem not in path.name
    when = re.fullmatch(r"medimg-report_lung_ct_(\d{4}-\d\d-\d\d)_(\d\d)-(\d\d)-\d\d_UTC\.pdf", name)
    assert when and lung_test_image().stem not in name, name
    text, _, _, _ = _read(path)
    assert f"{when[1]} {when[2]}:{when[3]}" in text  # the report's date line, to the minute
    assert LUNG_MODEL in text and _flat(DISCLAIMER) in text
