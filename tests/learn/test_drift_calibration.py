"""A temperature fitted for drift: val plus copies of it perturbed by the task's source-artefact augmentation; the
copies are reproducible and leave val itself alone, the fit covers every case, a written calibration drops any bias
and the card states it and prints the command that redoes it."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import LUNG
from medimg_demo.errors import ModelError, OptionError
from medimg_demo.learn.drift_calibration import DRIFT, DriftCalibration, fit_drift_temperature
from medimg_demo.models.config import ModelConfig

pytestmark = pytest.mark.skipif(not (LUNG / "manifest.csv").is_file(), reason="needs the lung_ct data set")


def _tiny(tiny_registry, tmp_path) -> ModelConfig:  # noqa: ANN001
    folder = tmp_path / "lung_ct.tiny_v0"
    shutil.copytree(tiny_registry / "lung_ct.tiny_v0", folder)
    return ModelConfig.from_dict(json.loads((folder / "config.json").read_text()), folder)


def test_perturbed_copies_are_reproducible_and_leave_val_alone(tiny_registry, tmp_path) -> None:
    from medimg_demo.learn.dataset import ManifestDataset, predict_logits
    from medimg_demo.manifest import read_manifest, split_frame
    from medimg_demo.models.network import load_model
    from medimg_demo.tasks import get_task

    cfg = _tiny(tiny_registry, tmp_path)
    frame = split_frame(read_manifest(LUNG), "val").head(12)
    ds = ManifestDataset(LUNG, frame, {"type": cfg.type_labels}, cfg.input, augment=None)
    model, spec = load_model(cfg), get_task("lung_ct").artefact_augment
    assert spec is not None
    clean = predict_logits(model, ds)["type"]
    one, again, other = (predict_logits(model, ds.augmented(spec, seed=s))["type"] for s in (0, 0, 1))
    assert torch.equal(one, again) and not torch.allclose(one, other) and not torch.allclose(one, clean)
    assert ds.augment is None and torch.equal(predict_logits(model, ds)["type"], clean)


def test_the_temperature_is_fitted_on_val_and_every_copy(tiny_registry, tmp_path, monkeypatch) -> None:
    """Confident on val, as confident but often wrong on the perturbed copies: the drift temperature must soften
    what val alone would fit, from all 3 x 85 cases."""
    import medimg_demo.learn.drift_calibration as drift

    cfg = _tiny(tiny_registry, tmp_path)
    seen: list[tuple[object, int]] = []

    def logits(model, ds):  # noqa: ANN001, ANN202
        seen.append((ds.augment, len(ds)))
        out = {}
        for head, y in ds.targets.items():
            k = len(cfg.heads[head])
            z = torch.zeros(len(y), k)
            wrong = torch.zeros(len(y), dtype=torch.bool) if ds.augment is None else torch.arange(len(y)) % 3 == 0
            z[torch.arange(len(y)), torch.where(wrong, (y + 1) % k, y)] = 6.0
            out[head] = z
        return out

    monkeypatch.setattr(drift, "predict_logits", logits)
    result = fit_drift_temperature(cfg, data=str(LUNG), copies=2)
    assert [a is None for a, _ in seen] == [True, False, False] and {n for _, n in seen} == {85}
    assert result.copies == 2 and result.n_cases == 3 * 85
    assert result.val_accuracy == 1.0 and result.perturbed_accuracy == pytest.approx(56 / 85)
    assert set(result.temperature) == {"type", "stage"}
    for head in result.temperature:
        assert result.temperature[head] > 1.0 > result.val_only[head]  # val alone sharpens, the copies soften
    record = result.record()
    assert record["method"] == DRIFT and record["copies"] == 2 and record["cases"] == 255
    assert record["perturbed_type_accuracy"] == round(56 / 85, 4) and record["val_only_temperature"] == result.val_only


def test_a_written_drift_temperature_replaces_a_bias_and_the_card_says_how_to_redo_it(tiny_registry, tmp_path) -> None:
    from medimg_demo.eval.card_training import calibration_line, data_line, reproduce_commands
    from medimg_demo.learn.cv_calibrate import write_calibration

    cfg = _tiny(tiny_registry, tmp_path)
    raw = json.loads((cfg.folder / "config.json").read_text())
    raw["bias"] = {"type": [0.5, 0.0, -0.5, 0.0]}
    (cfg.folder / "config.json").write_text(json.dumps(raw))
    result = DriftCalibration(temperature={"type": 0.64, "stage": 0.59}, val_only={"type": 0.31, "stage": 0.32},
                              copies=5, n_cases=510, val_accuracy=0.976, perturbed_accuracy=0.873)
    write_calibration(cfg, result)
    saved = json.loads((cfg.folder / "config.json").read_text())
    assert saved["temperature"] == {"type": 0.64, "stage": 0.59} and "bias" not in saved
    written = ModelConfig.from_dict(saved, cfg.folder)
    line = calibration_line(written)
    assert "for drift (Tomani et al." in line and "510 cases" in line and "accuracy 0.873" in line
    assert "perturbed copies" in data_line({}, saved["calibration"])
    commands = reproduce_commands(written, "python -m medimg_demo evaluate --model lung_ct.tiny_v0 --split test")
    assert commands[1] == "python -m medimg_demo calibrate --method drift --model lung_ct.tiny_v0 --copies 5 --write"
    assert commands[2] == "python -m medimg_demo gate --model lung_ct.tiny_v0"


def test_drift_calibration_refuses_what_it_cannot_do(tiny_registry, tmp_path) -> None:
    cfg = _tiny(tiny_registry, tmp_path)
    with pytest.raises(OptionError, match="--copies 0"):
        fit_drift_temperature(cfg, data=str(LUNG), copies=0)
    breast = ModelConfig.from_dict({**json.loads((cfg.folder / "config.json").read_text()), "task": "breast_us"})
    with pytest.raises(OptionError, match="defines none"):
        fit_drift_temperature(breast, data=str(LUNG))
    on_val = ModelConfig.from_dict({**json.loads((cfg.folder / "config.json").read_text()),
                                    "training": {"train_on_val": True}})
    with pytest.raises(ModelError, match="trained on val"):
        fit_drift_temperature(on_val, data=str(LUNG))
