"""Bias-corrected temperature scaling: the fit recovers a known temperature and bias, torch and NumPy agree, the
cross-validation within val recommends it only where it helps on held-out cases, and a written calibration is
validated, keyed into the evaluation cache and stated on the card."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from medimg_demo.errors import ConfigError
from medimg_demo.learn.bcts import MIN_GAIN, BctsResult, cross_validate, write_bcts
from medimg_demo.models.calibrate import T_MIN, calibrated_softmax, fit_calibration
from medimg_demo.models.calibration import Calibration
from medimg_demo.models.config import ModelConfig
from medimg_demo.models.registry import list_models


def _calibrated(n: int, k: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels drawn from softmax(logits): calibrated by construction."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g) * 2.0
    y = torch.multinomial(torch.softmax(z, 1), 1, generator=g)[:, 0]
    return z, y


def test_fit_recovers_a_known_temperature_and_bias() -> None:
    z, y = _calibrated(6000)
    shift = torch.tensor([-1.0, 0.5, 0.5])  # a learned prior: class 0 too low, centred like the fit's output
    distorted = (z + shift) * 2.0  # and over-confident by 2
    cal = fit_calibration(distorted, y)
    assert cal.temperature == pytest.approx(2.0, rel=0.08)
    assert cal.bias is not None and np.allclose(cal.bias, (-shift).tolist(), atol=0.12)
    assert abs(sum(cal.bias)) < 1e-3  # centred: a common offset changes nothing
    plain = fit_calibration(distorted, y, bias=False)
    assert plain.bias is None and plain.temperature > 1.0


def test_torch_and_numpy_calibrations_agree() -> None:
    z = torch.randn(50, 3) * 4
    cal = Calibration(temperature=0.7, bias=(1.2, -0.4, -0.8))
    assert np.allclose(calibrated_softmax(z, cal).numpy(), cal.probs(z.numpy()), atol=1e-6)
    assert np.allclose(Calibration(2.0).probs(z.numpy()), torch.softmax(z / 2.0, 1).numpy(), atol=1e-6)


def _result(z: torch.Tensor, y: torch.Tensor) -> BctsResult:
    table, k = cross_validate(z, y, folds=5, repeats=2)
    return BctsResult(fitted=fit_calibration(z, y), temperature_only=fit_calibration(z, y, bias=False),
                      comparison=table, n_cases=len(y), folds=k, repeats=2)


def test_cross_validation_recommends_bcts_only_where_held_out_cases_gain() -> None:
    z, y = _calibrated(300, seed=1)
    shifted = _result(z + torch.tensor([0.0, 0.0, 2.5]), y)  # class 2 over-called, as after covered-lesion training
    assert shifted.gain >= MIN_GAIN and shifted.recommended
    assert shifted.cv("bcts", "cv_accuracy") > shifted.cv("temperature", "cv_accuracy")
    fine = _result(z, y)  # nothing to correct: four more numbers only add variance
    assert fine.gain < MIN_GAIN and not fine.recommended


def test_a_nearly_separable_split_is_not_recommended() -> None:
    """Offsets can drive the NLL of separable data towards zero: the temperature lands on its bound, and the tool
    refuses to call that calibration (brain v5's val does this)."""
    g = torch.Generator().manual_seed(3)
    y = torch.arange(90) % 3
    z = torch.randn(90, 3, generator=g) * 0.3
    z[torch.arange(90), y] += 3.0
    z[:, 2] += 2.0
    r = _result(z, y)
    assert r.fitted.temperature == T_MIN and r.on_bound and not r.recommended


def test_cross_validation_refuses_a_class_missing_from_val() -> None:
    from medimg_demo.errors import ModelError

    z, y = _calibrated(40)
    with pytest.raises(ModelError, match="smallest class has 0"):
        cross_validate(z, torch.where(y == 2, torch.zeros_like(y), y))


def _config(**extra) -> dict:
    return {"id": "toy.v0", "task": "breast_us", "arch": "test_efficientnet", "heads": {"type": ["a", "b", "c"]},
            "input": {"size": [64, 64], "mean": [0.5] * 3, "std": [0.5] * 3},
            "weights": {"file": "weights.safetensors", "sha256": "0" * 64}, **extra}


@pytest.mark.parametrize("bias", [{"type": [1.0, 2.0]}, {"type": [1.0, "x", 2.0]}, {"type": [1.0, float("nan"), 0.0]},
                                  {"stage": [0.0, 0.0, 0.0]}, {"type": [True, 0.0, 0.0]}])
def test_a_malformed_bias_is_refused_with_its_field(bias) -> None:
    with pytest.raises(ConfigError, match="bias"):
        ModelConfig.from_dict(_config(bias=bias))


def test_a_config_bias_reaches_the_calibration() -> None:
    cfg = ModelConfig.from_dict(_config(temperature={"type": 0.5}, bias={"type": [1, 0, -1]}))
    assert cfg.calibration("type") == Calibration(0.5, (1.0, 0.0, -1.0))
    assert cfg.calibration("stage") == Calibration(1.0, None)


def test_write_pins_the_calibration_and_the_cache_key_follows_it(tmp_path) -> None:
    from medimg_demo.eval.cache import cache_dir

    folder = tmp_path / "toy.v0"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(_config(temperature={"type": 1.1})))
    cfg = ModelConfig.from_dict(json.loads((folder / "config.json").read_text()), folder)
    z, y = _calibrated(120)
    r = _result(z + torch.tensor([0.0, 0.0, 2.5]), y)
    write_bcts(cfg, r)
    again = ModelConfig.from_dict(json.loads((folder / "config.json").read_text()), folder)
    assert again.calibration("type") == r.fitted and again.raw["calibration"]["method"] == "bcts"
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.csv").write_text("image,label,split\n")
    assert cache_dir(cfg, data, "test", True, tmp_path) != cache_dir(again, data, "test", True, tmp_path)


def test_card_states_bcts_with_its_evidence_and_command() -> None:
    import pandas as pd

    from medimg_demo.eval.card import render

    cfg = next(m for m in list_models() if m.task == "lung_ct")
    cal = {"method": "bcts", "split": "val", "cases": 85, "folds": 5, "repeats": 5, "temperature_only": 0.31,
           "cv": {"temperature": {"cv_nll": 0.5, "cv_ece": 0.12, "cv_accuracy": 0.8},
                  "bcts": {"cv_nll": 0.3, "cv_ece": 0.07, "cv_accuracy": 0.9}}}
    labels = cfg.type_labels
    fake = dataclasses.replace(cfg, temperature={"type": 0.7}, bias={"type": tuple(float(i) for i in range(len(labels)))},
                               raw={**cfg.raw, "calibration": cal})
    metrics = pd.read_csv(cfg.folder / "metrics" / "metrics.csv", keep_default_na=False, na_values=[""])
    card = render(fake, metrics, "test", 125, "python -m medimg_demo evaluate")
    assert "bias-corrected temperature scaling (BCTS" in card and "softmax(logits / 0.7 + bias)" in card
    assert "held-out NLL 0.300 vs 0.500" in card and "(T = 0.31)" in card and f"'{labels[1]}': 1.0" in card
    assert "calibration on `val`" in card and "out-of-fold" not in card
    lines = card.splitlines()
    i = lines.index(f"MEDIMG_MODELS_DIR=runs/reproduce/{cfg.id} python -m medimg_demo calibrate --method bcts --model {cfg.id} --folds 5 --write")
    assert lines[i + 1] == f"MEDIMG_MODELS_DIR=runs/reproduce/{cfg.id} python -m medimg_demo gate --model {cfg.id}"


def test_a_bias_that_moves_the_call_moves_the_heatmap_with_it(tiny_registry) -> None:
    """The app shows the calibrated top class; Grad-CAM must explain that class, not the raw logits' top class."""
    from medimg_demo.imaging.decode import read_bytes
    from medimg_demo.predict import Predictor

    from conftest import gradient, png_bytes

    folder = tiny_registry / "lung_ct.tiny_v0"
    cfg = ModelConfig.from_dict(json.loads((folder / "config.json").read_text()), folder)
    study = read_bytes(png_bytes((gradient() * 255).astype(np.uint8)))
    plain = Predictor(cfg).run(study, gate=False)
    other = next(c for c in cfg.type_labels if c != plain.type_label)
    bias = tuple(20.0 if c == other else 0.0 for c in cfg.type_labels)
    moved = Predictor(dataclasses.replace(cfg, bias={"type": bias})).run(study, gate=False)
    assert moved.type_label == other and moved.heatmap_class == other
    assert moved.type_probs is not None and moved.type_probs[other] > 0.99
    assert moved.heatmap is not None and plain.heatmap is not None
    assert not np.allclose(moved.heatmap, plain.heatmap)  # another class's evidence, not the raw top class's map


def test_find_results_skips_an_evaluation_made_under_another_calibration(tmp_path) -> None:
    from medimg_demo.eval.cache import cache_dir, find_results

    cfg = ModelConfig.from_dict(_config(temperature={"type": 1.1}))
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.csv").write_text("image,label,split\n")
    old = cache_dir(cfg, data, "test", True, tmp_path)
    old.mkdir(parents=True)
    (old / "metrics.csv").write_text("metric,class,value,ci_low,ci_high\naccuracy,,0.5,0.4,0.6\n")
    assert find_results(cfg, tmp_path) is not None
    same_t = dataclasses.replace(cfg, bias={"type": (1.0, 0.0, -1.0)})  # only the bias differs
    assert cache_dir(same_t, data, "test", True, tmp_path) != old
    assert find_results(same_t, tmp_path) is None


def test_a_cross_validated_temperature_replaces_a_bcts_calibration_whole(tmp_path) -> None:
    """A BCTS bias belongs to the temperature it was fitted with: writing a cv-temperature drops it."""
    from medimg_demo.learn.cv_calibrate import CvCalibration, write_calibration

    folder = tmp_path / "toy.v0"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(_config(temperature={"type": 0.7}, bias={"type": [1, 0, -1]})))
    cfg = ModelConfig.from_dict(json.loads((folder / "config.json").read_text()), folder)
    write_calibration(cfg, CvCalibration({"type": 0.9}, {"type": 0.8}, 3, 100, 0.9, 0.9))
    again = ModelConfig.from_dict(json.loads((folder / "config.json").read_text()), folder)
    assert again.calibration("type") == Calibration(0.9, None) and not again.bias


def test_gate_scores_use_the_temperature_fitted_without_the_bias() -> None:
    plain = ModelConfig.from_dict(_config(temperature={"type": 1.3}))
    assert plain.gate_temperature == 1.3
    bcts = ModelConfig.from_dict(_config(temperature={"type": 0.7}, bias={"type": [1, 0, -1]},
                                         calibration={"method": "bcts", "temperature_only": 1.2}))
    assert bcts.gate_temperature == 1.2
