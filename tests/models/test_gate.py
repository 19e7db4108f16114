"""The gate: header check, out-of-distribution scores, pinned statistics, refusal and abstention in the one
prediction path, routing and the Auto choice."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA_ROOT, dicom_bytes, gradient, png_bytes
from medimg_demo.errors import ConfigError, ModelError
from medimg_demo.imaging import read_bytes
from medimg_demo.models.config import ModelConfig
from medimg_demo.models.gate import METHODS, fit_stats, header_refusal, load_stats, save_stats


def test_header_check_names_the_modality_and_what_the_model_reads() -> None:
    assert header_refusal("NM", None, "lung_ct") == (
        "Modality NM; this model reads CT (Lung CT). Choose a model for this kind of image, or Auto.")
    assert "Body part BREAST" in header_refusal("CT", "BREAST", "lung_ct")
    assert header_refusal("US", "BREAST", "breast_us") is None
    assert header_refusal(None, None, "brain_mri") is None  # PNG/JPEG: no header to check
    assert header_refusal("MR", "BRAIN", "brain_mri") is None


@pytest.mark.parametrize("method", METHODS)
def test_scores_rise_away_from_the_training_features(method: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 32)) * 3
    labels = np.repeat(np.arange(3), 60)
    feats = centres[labels] + rng.normal(size=(180, 32)) * 0.3
    logits = np.eye(3)[labels] * 6.0
    stats = fit_stats(method, feats, labels)
    near = stats.score(centres + 0.1, np.eye(3) * 6.0)
    far = stats.score(rng.normal(size=(3, 32)) * 3, np.full((3, 3), 0.1))
    assert far.min() > near.max(), (method, near, far)
    sha = save_stats(stats, tmp_path / "gate.safetensors")
    back = load_stats(tmp_path / "gate.safetensors", sha, method, stats.k, stats.temperature)
    np.testing.assert_allclose(back.score(feats[:5], logits[:5]), stats.as_stored().score(feats[:5], logits[:5]), rtol=1e-6)
    with pytest.raises(ModelError, match="sha256"):
        load_stats(tmp_path / "gate.safetensors", "0" * 64, method, stats.k, stats.temperature)


def test_gate_block_is_validated() -> None:
    base = {"id": "x", "task": "lung_ct", "arch": "test_efficientnet", "heads": {"type": ["a", "b"]},
            "input": {"size": [64, 64], "mean": [0.5] * 3, "std": [0.5] * 3}}
    cfg = ModelConfig.from_dict({**base, "gate": {"method": "knn", "threshold": 0.2, "abstain_below": 0.6}})
    assert cfg.gate is not None and cfg.gate.method == "knn" and cfg.gate.file == "gate.safetensors"
    with pytest.raises(ConfigError, match="gate.method"):
        ModelConfig.from_dict({**base, "gate": {"method": "vibes", "threshold": 1, "abstain_below": 0.5}})
    with pytest.raises(ConfigError, match="gate.abstain_below"):
        ModelConfig.from_dict({**base, "gate": {"method": "msp", "threshold": 1, "abstain_below": 3}})


@pytest.fixture()
def gated_registry(tmp_path: Path, tiny_registry: Path) -> Path:
    """The tiny model with a kNN gate fitted on features of smooth gradient images."""
    import torch

    from medimg_demo.models.preprocess import model_pixels, to_tensor
    from medimg_demo.models.registry import get_model
    from medimg_demo.predict import Predictor

    root = tmp_path / "models"
    shutil.copytree(tiny_registry, root)
    cfg = get_model(None, root)
    model = Predictor(cfg).model
    rng = np.random.default_rng(0)
    feats = []
    for i in range(40):
        img = np.clip(gradient(64, 64) * (0.7 + 0.3 * rng.random()) + rng.normal(0, 0.01, (64, 64)), 0, 1)
        study = read_bytes(png_bytes((img * 255).astype(np.uint8)))
        with torch.no_grad():
            feats.append(model.pooled(model.forward_features(to_tensor(model_pixels(study, cfg.input), cfg.input))).numpy())
    stats = fit_stats("knn", np.concatenate(feats), np.zeros(40, dtype=int))
    sha = save_stats(stats, cfg.folder / "gate.safetensors")
    train_scores = stats.as_stored().score(np.concatenate(feats), np.zeros((40, 4)))
    d = json.loads((cfg.folder / "config.json").read_text())
    d["gate"] = {"file": "gate.safetensors", "sha256": sha, "method": "knn", "threshold": float(train_scores.max()) * 1.5 + 1e-6,
                 "abstain_below": 0.0, "k": stats.k}
    (cfg.folder / "config.json").write_text(json.dumps(d))
    return root


def test_noise_is_refused_without_type_or_pathway(gated_registry: Path, monkeypatch) -> None:
    from medimg_demo.predict import get_predictor, predict_study

    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(gated_registry))
    ok = predict_study(read_bytes(png_bytes((gradient(64, 64) * 255).astype(np.uint8))))
    assert ok.status == "ok" and ok.treatment is not None and ok.ood["score"] <= ok.ood["threshold"]
    noise = read_bytes(png_bytes(np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8)))
    pred = predict_study(noise)
    js = pred.to_json()
    assert pred.status == "refused" and js["status"] == "refused"
    assert js["type"] is None and js["treatment"] is None and js["stage"] is None and pred.heatmap is None
    assert js["ood"]["score"] > js["ood"]["threshold"] and js["ood"]["method"] == "knn"
    assert "not similar enough" in js["reason"]
    # a DICOM of another modality is refused by its header before any forward
    nm = read_bytes(dicom_bytes((gradient(64, 64) * 1000).astype(np.uint16), modality="NM"))
    assert predict_study(nm).reason.startswith("Modality NM; this model reads CT")
    # abstention: below the calibrated confidence threshold the answer is indeterminate, with the top two classes
    p = get_predictor()
    sure = replace(p.cfg, gate=replace(p.cfg.gate, abstain_below=0.99))
    p.cfg = sure
    try:
        ind = p.run(read_bytes(png_bytes((gradient(64, 64) * 255).astype(np.uint8))))
    finally:
        p.cfg = replace(sure, gate=replace(sure.gate, abstain_below=0.0))
    assert ind.status == "indeterminate" and ind.treatment is None and len(ind.top2) == 2
    assert ind.top2[0][1] >= ind.top2[1][1] and "Indeterminate" in ind.reason


def test_a_batch_row_that_abstains_names_no_type_as_predict_does(gated_registry: Path) -> None:
    """An indeterminate batch row carried the top class in ``type_label`` (predict's JSON says ``"type": null``), so a
    filter on the column counted undecided cases as calls; and the spacing's source was filled only beside a lesion."""
    from medimg_demo.batch.score import BatchScorer

    cfg = json.loads((gated_registry / "lung_ct.tiny_v0" / "config.json").read_text())
    cfg["gate"]["abstain_below"] = 0.99
    (gated_registry / "lung_ct.tiny_v0" / "config.json").write_text(json.dumps(cfg))
    scorer = BatchScorer("lung_ct.tiny_v0", prefer_onnx=False, registry=gated_registry)
    png = png_bytes((gradient(64, 64) * 255).astype(np.uint8))
    dcm = dicom_bytes((gradient(64, 64) * 1000).astype(np.uint16), spacing=(0.7, 0.7))
    rows, _ = scorer.score([png, dcm], [{"path": "a.png"}, {"path": "b.dcm"}])
    assert [r["status"] for r in rows] == ["indeterminate"] * 2, rows
    assert all(r["type_label"] is None and r["stage_label"] is None for r in rows), rows
    assert all(abs(sum(json.loads(r["type_probs"]).values()) - 1) < 1e-4 for r in rows)  # the probabilities stay
    assert [r["pixel_spacing_source"] for r in rows] == [None, "file"]


def test_a_refusal_says_how_far_past_the_gate_the_image_lies_and_batch_says_the_same(gated_registry: Path,
                                                                                      monkeypatch) -> None:
    """"out-of-distribution score 2.84e+04 above 5.62e+03" left a clinician to divide; batch rows worded it apart."""
    from medimg_demo.batch.score import BatchScorer
    from medimg_demo.models.gate import ood_refusal
    from medimg_demo.predict import predict_study

    assert "is 5.1 times the most the model accepts (2.84e+04; refused above 5.62e+03)" in ood_refusal("CT", 28400,
                                                                                                        5615)
    assert "is just above the most" in ood_refusal("CT", 5700, 5558)
    assert "score, -3, is above the most the model accepts, -5." in ood_refusal("CT", -3, -5)  # energy: no ratio
    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(gated_registry))
    noise = png_bytes(np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8))
    pred = predict_study(read_bytes(noise))
    rows, _ = BatchScorer("lung_ct.tiny_v0", prefer_onnx=False, registry=gated_registry).score([noise], [{"path": "n"}])
    assert pred.status == rows[0]["status"] == "refused" and "times the most the model accepts" in pred.reason
    score, threshold = pred.ood["score"], pred.ood["threshold"]
    assert pred.reason == ood_refusal("Lung CT", score, threshold)
    assert rows[0]["reason"] == ood_refusal("Lung CT", rows[0]["ood_score"], threshold)


def test_auto_with_no_model_accepting_names_the_nearest_and_its_score(gated_registry: Path, monkeypatch) -> None:
    """With auto and every gate refusing, predict's JSON named the default model with "ood": null, and batch rows no
    score at all: nothing said how far the image lay from any training data."""
    from medimg_demo.batch.score import BatchScorer
    from medimg_demo.models.gate import auto_refusal
    from medimg_demo.predict import AUTO, predict_study

    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(gated_registry))
    noise = png_bytes(np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8))
    nm = dicom_bytes((gradient(64, 64) * 1000).astype(np.uint16), modality="NM")  # no model reads NM
    pred, ruled_out = predict_study(read_bytes(noise), AUTO), predict_study(read_bytes(nm), AUTO)
    rows, _ = BatchScorer(AUTO, prefer_onnx=False, registry=gated_registry).score([noise, nm], [{"path": "n"},
                                                                                                {"path": "m"}])
    js = pred.to_json()
    assert js["status"] == "refused" and js["model"] == "lung_ct.tiny_v0"
    assert js["ood"]["score"] > js["ood"]["threshold"]
    ratio = js["ood"]["score"] / js["ood"]["threshold"]
    assert js["reason"] == auto_refusal("Lung CT", js["ood"]["score"], js["ood"]["threshold"])
    assert js["reason"].startswith("None of the bundled models") and f"the lung CT model: its out-of-distribution " \
        f"score is {ratio:.1f} times the most that model accepts." in js["reason"]
    assert rows[0]["status"] == "refused" and rows[0]["model_id"] == "lung_ct.tiny_v0"
    assert rows[0]["reason"] == auto_refusal("Lung CT", rows[0]["ood_score"], rows[0]["ood_threshold"])
    assert ruled_out.status == "refused" and ruled_out.ood is None and ruled_out.reason == auto_refusal()
    assert rows[1]["status"] == "refused" and rows[1]["model_id"] is None and rows[1]["reason"] == auto_refusal()
    assert "is just above the most that model accepts" in auto_refusal("Lung CT", 5700, 5558)


def test_auto_ranks_accepting_gates_first_and_a_score_that_is_not_a_number_last() -> None:
    """A NaN ratio had stayed "best" (no ratio is below NaN), so the image was refused though another model took it."""
    from medimg_demo.models.gate import gate_rank

    ranks = {"nan": gate_rank(float("nan"), 10.0), "takes": gate_rank(9.0, 10.0), "near": gate_rank(12.0, 10.0),
             "far": gate_rank(50.0, 10.0), "energy takes": gate_rank(-6.0, -5.0)}
    assert sorted(ranks, key=ranks.__getitem__) == ["takes", "energy takes", "near", "far", "nan"]


def _image(task: str, label: str | None = None) -> bytes:
    import csv

    manifest = DATA_ROOT / task / "manifest.csv"
    if not manifest.is_file():
        pytest.skip("shared data not found")
    with open(manifest, newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["split"] == "test" and (label is None or r["label"] == label))
    return (DATA_ROOT / task / row["image"]).read_bytes()


def test_committed_models_refuse_other_tasks_and_route_them() -> None:
    from medimg_demo.models.registry import list_models
    from medimg_demo.predict import AUTO, predict_study

    ids = {m.task: m.id for m in list_models()}
    if not all(m.gate for m in list_models()):
        pytest.skip("a committed model has no gate yet")
    brain = read_bytes(_image("brain_mri", "glioma"))
    lung_says = predict_study(brain, ids["lung_ct"], explain=False)
    assert lung_says.status == "refused" and lung_says.suggested_model == ids["brain_mri"]
    assert "brain MRI" in lung_says.reason and lung_says.treatment is None
    auto = predict_study(brain, AUTO, explain=False)
    assert auto.model_id == ids["brain_mri"] and auto.status in ("ok", "indeterminate")
    for task in ("lung_ct", "breast_us"):
        assert predict_study(read_bytes(_image(task)), AUTO, explain=False).model_id == ids[task]
    photo = read_bytes(png_bytes(np.random.default_rng(3).integers(0, 256, (200, 200), dtype=np.uint8)))
    assert predict_study(photo, AUTO, explain=False).status == "refused"


def test_predict_many_files_one_json_line_each_in_order(tmp_path: Path, capsys) -> None:
    from medimg_demo.cli import main

    good = tmp_path / "a.png"
    good.write_bytes(_image("lung_ct", "adenocarcinoma"))
    bad = tmp_path / "b.dcm"
    bad.write_text("not an image")
    noise = tmp_path / "c.png"
    noise.write_bytes(png_bytes(np.random.default_rng(5).integers(0, 256, (128, 128), dtype=np.uint8)))
    code = main(["predict", str(good), str(bad), str(noise), "--json"])
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert code == 2 and [x["index"] for x in lines] == [0, 1, 2]
    assert lines[0]["status"] in ("ok", "indeterminate") and lines[1]["status"] == "error"
    assert "Accepted" in lines[1]["reason"]
    assert lines[0]["ood"] is not None and lines[2]["status"] == "refused"  # the committed lung model is gated
    assert all("a.png" not in json.dumps(x) for x in lines)  # no file names echoed


def test_non_finite_gate_thresholds_are_refused_and_indeterminate_names_no_type() -> None:
    base = {"id": "x", "task": "lung_ct", "arch": "test_efficientnet", "heads": {"type": ["a", "b"]},
            "input": {"size": [64, 64], "mean": [0.5] * 3, "std": [0.5] * 3}}
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="gate.threshold"):
            ModelConfig.from_dict({**base, "gate": {"method": "knn", "threshold": bad, "abstain_below": 0.5}})
    from medimg_demo.predict import Prediction

    ind = Prediction(model_id="x", task="lung_ct", type_label="a", type_probs={"a": 0.55, "b": 0.45}, stage_label=None,
                     stage_probs=None, stage_note=None, treatment=None, image=np.zeros((4, 4)), heatmap=None,
                     heatmap_class=None, image_sha256="0" * 64, modality=None, pixel_spacing_mm=None,
                     status="indeterminate", reason="not sure", top2=(("a", 0.55), ("b", 0.45)))
    js = ind.to_json()
    assert js["type"] is None and js["top2"][0] == {"label": "a", "probability": 0.55} and js["treatment"] is None
