"""Command line: models --json, predict --json on a real lung CT test image, evaluate."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import LUNG, REPO, dicom_bytes, gradient, lung_test_image
from medimg_demo.cli import main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medimg_demo", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # a subprocess: a fresh interpreter loads torch and the model
def test_models_json() -> None:
    r = _run("models", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert rows and {"id", "task", "labels", "default"} <= set(rows[0])
    assert sum(r["default"] for r in rows) == 1
    lung = [r for r in rows if r["task"] == "lung_ct"]
    assert lung and "stage" in lung[0]["labels"]


@pytest.mark.slow  # a subprocess: a fresh interpreter loads torch and the model
def test_predict_json_on_real_lung_ct(tmp_path) -> None:
    img = lung_test_image()
    out_png = tmp_path / "overlay.png"
    r = _run("predict", str(img), "--heatmap-out", str(out_png), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert {"model", "type", "stage", "treatment"} <= set(d)
    probs = d["type"]["probabilities"]
    assert set(probs) == {"adenocarcinoma", "large_cell_carcinoma", "normal", "squamous_cell_carcinoma"}
    assert abs(sum(probs.values()) - 1) < 1e-4 and d["type"]["label"] == max(probs, key=probs.get)
    assert d["stage"]["label"] in {"Ib", "IIIa", "none"}
    assert d["treatment"]["summary"] and d["treatment"]["options"] and d["treatment"]["source"]
    # the CLI gives exactly what the in-process predictor gives for the same file
    from medimg_demo.imaging import read_file
    from medimg_demo.predict import get_predictor

    pred = get_predictor(d["model"]).run(read_file(img), explain=False)
    assert pred.type_label == d["type"]["label"]
    assert abs(pred.type_probs[pred.type_label] - probs[pred.type_label]) < 1e-5
    overlay = np.asarray(Image.open(out_png))
    src = Image.open(img)
    assert overlay.shape == (src.height, src.width, 3)


def test_predict_dicom_keeps_phi_out_of_output(tmp_path, capsys, caplog) -> None:
    path = tmp_path / "scan"
    path.write_bytes(dicom_bytes((gradient(128, 128) * 1500).astype(np.uint16), slope=1, intercept=-1024, window=(-600, 1500)))
    assert main(["predict", str(path), "--json"]) == 0
    out = capsys.readouterr().out + caplog.text
    d = json.loads(out[: out.rindex("}") + 1])
    assert d["modality"] == "CT" and d["pixel_spacing_mm"] == [0.7, 0.7]
    for secret in ("Doe", "Jane", "PID-998877", "19600101", "Hidden Road", "Secretia"):
        assert secret not in out


@pytest.mark.slow  # a subprocess: a fresh interpreter loads torch and the model
def test_predict_bad_file_exits_2_with_message(tmp_path) -> None:
    bad = tmp_path / "notes.dcm"
    bad.write_text("not an image at all")
    r = _run("predict", str(bad), "--json")
    assert r.returncode == 2
    assert "Accepted" in r.stderr and "Traceback" not in r.stderr


def test_evaluate_writes_tidy_csv(tmp_path, tiny_registry, monkeypatch) -> None:
    """evaluate on a small synthetic data set: one row per metric with 95% intervals."""
    import pandas as pd

    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(tiny_registry))
    data = tmp_path / "set"
    (data / "images").mkdir(parents=True)
    rows = []
    rng = np.random.default_rng(0)
    labels = ["adenocarcinoma", "large_cell_carcinoma", "normal", "squamous_cell_carcinoma"]
    for i in range(16):
        arr = (rng.random((48, 48)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(data / "images" / f"i{i}.png")
        rows.append({"image": f"images/i{i}.png", "label": labels[i % 4], "split": "holdout", "stage": ["Ib", "IIIa", "none", "IIIa"][i % 4]})
    pd.DataFrame(rows).to_csv(data / "manifest.csv", index=False)
    out = tmp_path / "m.csv"
    assert main(["evaluate", "--data", str(data), "--split", "holdout", "--out", str(out), "--bootstrap", "50",
                 "--runs", str(tmp_path / "runs")]) == 0
    m = pd.read_csv(out, keep_default_na=False)
    assert list(m.columns) == ["metric", "class", "value", "ci_low", "ci_high"]
    assert {"accuracy", "macro_auc", "ece", "sensitivity", "specificity", "precision", "f1", "stage_accuracy"} <= set(m["metric"])
    acc = m[(m.metric == "accuracy")].iloc[0]
    assert 0 <= float(acc.ci_low) <= float(acc.value) <= float(acc.ci_high) <= 1
    # --out and --cases-out are checked as every command's outputs, before the evaluation: `--out manifest.csv` had
    # replaced the data set's manifest, an existing file or a link's target was overwritten, a folder was a traceback
    manifest = (data / "manifest.csv").read_bytes()
    (tmp_path / "link.csv").symlink_to(out)
    refused = {"--out": [data / "manifest.csv", out, tmp_path, tmp_path / "link.csv", tmp_path / "no" / "m.csv",
                         tmp_path / "m.txt"],
               "--cases-out": [tmp_path / "same.csv", data / "manifest.csv"]}  # with --out same.csv --overwrite
    for option, paths in refused.items():
        for path in paths:
            args = ["evaluate", "--data", str(data), "--split", "holdout", option, str(path), "--bootstrap", "50",
                    "--runs", str(tmp_path / "refused_runs")]
            if option == "--cases-out":
                args += ["--out", str(tmp_path / "same.csv"), "--overwrite"]
            assert main(args) == 2, (option, path)
    assert (data / "manifest.csv").read_bytes() == manifest and pd.read_csv(out, keep_default_na=False).equals(m)
    assert not (tmp_path / "refused_runs").exists() and not (tmp_path / "same.csv").exists()  # before any work
    assert main(["evaluate", "--data", str(data), "--split", "holdout", "--out", str(out), "--overwrite", "--cases-out",
                 str(tmp_path / "cases.csv"), "--bootstrap", "50", "--runs", str(tmp_path / "runs")]) == 0
    assert len(pd.read_csv(tmp_path / "cases.csv")) == 16
    # --card (on a copy of the model): the card and the bundled figures the Performance tab reads, in the folder
    import shutil

    models = tmp_path / "models"
    shutil.copytree(tiny_registry, models)
    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(models))
    assert main(["evaluate", "--data", str(data), "--split", "holdout", "--bootstrap", "50", "--runs",
                 str(tmp_path / "runs"), "--card"]) == 0
    folder = next(p for p in models.iterdir() if p.is_dir())
    bundled = pd.read_csv(folder / "metrics" / "metrics.csv", keep_default_na=False)
    assert bundled.equals(m) and len(pd.read_csv(folder / "metrics" / "cases.csv")) == 16
    card = (folder / "MODEL_CARD.md").read_text()
    assert f"{float(acc.value):.3f}" in card and f"--out runs/reproduce/{folder.name}" in card


def test_default_lung_model_is_accurate_on_test_cases() -> None:
    """The committed model, through the same reader and preprocessing as the app, on 40 test-split images."""
    import csv

    from medimg_demo.imaging import read_file
    from medimg_demo.predict import get_predictor

    if not (LUNG / "manifest.csv").is_file():
        pytest.skip("shared data not found")
    with open(LUNG / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"][:40]
    predictor = get_predictor("lung_ct.tf_efficientnet_lite0_v2")
    hits = sum(predictor.run(read_file(LUNG / r["image"]), explain=False).type_label == r["label"] for r in rows)
    assert hits / len(rows) >= 0.8, f"{hits}/{len(rows)}"


@pytest.mark.parametrize("argv,names", [
    (["train", "--task", "lung_ct", "--calibration-fold", "2"], "--calibration-folds"),
    (["train", "--task", "lung_ct", "--calibration-folds", "5", "--init-from", "lung_ct.tf_efficientnet_lite0_v2"],
     "--init-from"),
    (["train", "--task", "lung_ct", "--projection-weight", "1"], "--lesion"),
    (["train", "--task", "lung_ct", "--batch-size", "0"], "--batch-size 0"),  # was torch's ValueError traceback
    (["train", "--task", "lung_ct", "--size", "0"], "--size 0"),  # was PIL's ValueError traceback
    (["train", "--task", "lung_ct", "--epochs", "0", "--warmup-epochs", "0"], "nothing would be trained"),
    (["train", "--task", "lung_ct", "--erase-lesion", "1.5"], "--erase-lesion 1.5"),
    (["feedback", "summary", "--db", "no/such/feedback.sqlite"], "No feedback store at"),  # was "no feedback yet"
    (["report", "no-such-scan.png", "--out", "."], "is a folder: give the report's file name"),
    (["batch", "no/such/folder", "--out", "x.parquet", "--model", "no_such_model"], "Unknown model 'no_such_model'"),
    (["batch", "no/such/folder", "--out", "x.parquet"], "does not exist: give a folder"),  # was "is not one"
    (["batch", "no/such/folder", "--out", "x.parquet", "--model", "lung_ct"],
     "is a task, not a model: its served model is lung_ct.tf_efficientnet_lite0_v2"),  # listed all nine ids
])
def test_options_that_do_not_fit_exit_2_with_what_to_change(argv: list[str], names: str, caplog) -> None:
    """Refused before any image is decoded: a logged message naming the option, exit code 2, no traceback."""
    assert main(argv) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and names in errors[0]


@pytest.mark.skipif(not (LUNG / "manifest.csv").is_file(), reason="shared lung data not found")
@pytest.mark.parametrize("arch,names", [("no_such_net", "Unknown timm architecture 'no_such_net'"),
                                        ("resnet18", "needs an EfficientNet-style timm backbone")])
def test_an_architecture_that_cannot_train_exits_2_with_what_to_use(arch: str, names: str, tmp_path, caplog) -> None:
    """Before, timm's RuntimeError or the lesion head's ValueError ended ``train`` in a traceback."""
    argv = ["train", "--task", "lung_ct", "--arch", arch, "--pretrained", "none", "--epochs", "1", "--out", str(tmp_path)]
    if arch == "resnet18":
        argv = [a.replace("lung_ct", "breast_us") for a in argv] + ["--lesion"]
    assert main(argv) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and names in errors[0] and "tf_efficientnet_lite" in errors[0]
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("argv,names", [
    (["predict", "--opacity", "5", "scan.png"], "--opacity: 5 is outside 0 to 1"),  # was drawn at opacity 5
    (["evaluate", "--bootstrap", "-5"], "--bootstrap: -5 is outside 10 to 100000"),
    (["evaluate", "--bootstrap", "many"], "'many' is not a number"),
])
def test_numbers_out_of_range_are_usage_errors(argv: list[str], names: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and names in capsys.readouterr().err


def test_predict_text_names_each_input_by_position_and_reads_as_the_screens(tmp_path, capsys, caplog) -> None:
    """Several inputs printed result blocks and errors that named no input; probabilities read "(1.00)" and labels
    "adenocarcinoma", where every screen shows "Adenocarcinoma (99%)". A file's name may carry a patient's: the
    position names it."""
    good = tmp_path / "DOE_JANE.png"
    good.write_bytes(lung_test_image().read_bytes())
    bad = tmp_path / "SMITH_JOHN.png"
    bad.write_text("not an image")
    assert main(["predict", str(good), str(bad)]) == 2
    out, logged = capsys.readouterr().out, caplog.text
    assert "== input 1 of 2 ==" in out and "== input 2 of 2 ==" in out
    assert "input 2 of 2: " in logged and "input 1 of 2" not in logged
    assert re.search(r"^type:  [A-Z][a-z]+.* \((\d|[1-9]\d)%\)$", out, re.M), out
    assert not re.search(r"\(\d\.\d\d\)", out) and "%" in out
    assert "DOE" not in out + logged and "SMITH" not in out + logged
    folder = tmp_path / "DOE_JANE_1960"  # a folder or a missing file: named by position in the JSON too
    folder.mkdir()
    assert main(["predict", str(folder), str(tmp_path / "SMITH_JOHN.dcm"), "--json"]) == 2
    out, logged = capsys.readouterr().out, caplog.text
    reasons = [json.loads(line)["reason"] for line in out.splitlines()]
    assert reasons == ["Input 1 of 2 is a folder: give a file (batch scores a folder).", "No such file: input 2 of 2."]
    assert "DOE" not in out + logged and "SMITH" not in out + logged


def test_predict_names_the_output_it_could_not_write(tmp_path, capsys, caplog, monkeypatch) -> None:
    """A failed write (a full disk) read "A file of input 0 could not be written": no option, no path."""
    import errno

    import PIL.Image

    def full(self, fp, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        raise OSError(errno.ENOSPC, "No space left on device", str(fp))

    monkeypatch.setattr(PIL.Image.Image, "save", full)
    overlay = tmp_path / "overlay.png"
    assert main(["predict", str(lung_test_image()), "--heatmap-out", str(overlay), "--json"]) == 2
    assert f"--heatmap-out {overlay} could not be written for input 1 of 1 (No space left on device)" in caplog.text
    assert json.loads(capsys.readouterr().out)["type"]["label"]  # the prediction is still printed
