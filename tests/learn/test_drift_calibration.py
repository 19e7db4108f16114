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
    """Confident on val, as confident but often wrong on the perturbed copies: the drift temperature is the NLL fit on
    all 3 x 85 cases (val first, then each copy, drawn through the task's artefact augmentation from seeds 0 and 1),
    and it softens what val alone would fit."""
    import medimg_demo.learn.drift_calibration as drift
    from medimg_demo.models.calibrate import fit_temperature
    from medimg_demo.tasks import get_task

    cfg = _tiny(tiny_registry, tmp_path)
    seen: list[tuple[object, int | None]] = []
    given: list[dict[str, torch.Tensor]] = []

    def logits(model, ds):  # noqa: ANN001, ANN202
        seen.append((ds.augment, None if ds.augment is None else ds._g.initial_seed()))
        out = {}
        for head, y in ds.targets.items():
            k = len(cfg.heads[head])
            z = torch.zeros(len(y), k)
            wrong = torch.zeros(len(y), dtype=torch.bool) if ds.augment is None else \
                (torch.arange(len(y)) + len(seen)) % 3 == 0  # each copy wrong on other images
            z[torch.arange(len(y)), torch.where(wrong, (y + 1) % k, y)] = 6.0
            out[head] = z
        given.append(out)
        return out

    monkeypatch.setattr(drift, "predict_logits", logits)
    result = fit_drift_temperature(cfg, data=str(LUNG), copies=2)
    spec = get_task("lung_ct").artefact_augment
    assert seen == [(None, None), (spec, 0), (spec, 1)]
    assert result.copies == 2 and result.n_cases == 3 * 85 and result.val_accuracy == 1.0
    from medimg_demo.learn.dataset import ManifestDataset
    from medimg_demo.manifest import read_manifest, split_frame

    targets = ManifestDataset(LUNG, split_frame(read_manifest(LUNG), "val"), cfg.heads, cfg.input).targets
    for head in ("type", "stage"):
        expected = fit_temperature(torch.cat([g[head] for g in given]), targets[head].repeat(3))
        assert result.temperature[head] == pytest.approx(expected)
        assert result.val_only[head] == pytest.approx(fit_temperature(given[0][head], targets[head]))
        assert result.temperature[head] > 1.0 > result.val_only[head]  # val alone sharpens, the copies soften
    record = result.record()
    assert record["method"] == DRIFT and record["copies"] == 2 and record["seeds"] == [0, 1] and record["cases"] == 255
    assert record["perturbation"]["marks"] == spec.marks and record["val_only_temperature"] == result.val_only


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
    assert commands[1] == "MEDIMG_MODELS_DIR=runs/reproduce/lung_ct.tiny_v0 python -m medimg_demo calibrate --method drift --model lung_ct.tiny_v0 --copies 5 --write"
    assert commands[2] == "MEDIMG_MODELS_DIR=runs/reproduce/lung_ct.tiny_v0 python -m medimg_demo gate --model lung_ct.tiny_v0"


def test_drift_calibration_refuses_what_it_cannot_do(tiny_registry, tmp_path) -> None:
    cfg = _tiny(tiny_registry, tmp_path)
    with pytest.raises(OptionError, match="--copies 0"):
        fit_drift_temperature(cfg, data=str(LUNG), copies=0)
    breast = ModelConfig.from_dict({**json.loads((cfg.folder / "config.json").read_text()), "task": "breast_us"})
    with pytest.raises(OptionError, match="defines none"):
        fit_drift_temperature(breast, data=str(LUNG))
    raw = json.loads((cfg.folder / "config.json").read_text())
    with pytest.raises(ModelError, match="trained on val"):
        fit_drift_temperature(ModelConfig.from_dict({**raw, "training": {"train_on_val": True}}), data=str(LUNG))
    with pytest.raises(OptionError, match="held out of its training"):  # would replace a temperature fitted on more
        fit_drift_temperature(ModelConfig.from_dict({**raw, "training": {"calibration_folds": 10}}), data=str(LUNG))
    with pytest.raises(OptionError, match="recalibrate that model"):
        fit_drift_temperature(ModelConfig.from_dict({**raw, "training": {"lesion_only": True, "init_from": "m"}}),
                              data=str(LUNG))
    no_stage = tmp_path / "no_stage"
    no_stage.mkdir()
    (no_stage / "manifest.csv").write_text((LUNG / "manifest.csv").read_text())
    import pandas as pd

    pd.read_csv(no_stage / "manifest.csv").drop(columns=["stage"]).to_csv(no_stage / "manifest.csv", index=False)
    with pytest.raises(OptionError, match="labels only"):  # a head left at T = 1 silently, else
        fit_drift_temperature(cfg, data=str(no_stage))
