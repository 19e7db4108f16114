"""A calibration fold held out of training: never trained on, twins kept with it, the temperature fitted on it + val."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from PIL import Image

from conftest import two_class_set
from medimg_demo.learn.config import TrainConfig


def _toy(root) -> None:
    two_class_set(root, noise=120, square=160, seed=1)


def test_the_calibration_fold_is_one_whole_fold_with_its_twins(tmp_path) -> None:
    from medimg_demo.learn.holdout import split_calibration_fold

    data = tmp_path / "toy"
    _toy(data)
    Image.open(data / "images" / "train_left_0.png").save(data / "images" / "train_left_1.png")  # a twin
    frame = pd.read_csv(data / "manifest.csv")
    train_df = frame[frame.split == "train"]
    held_sets = []
    for k in range(3):
        rest, held = split_calibration_fold(data, train_df, 3, k, seed=0)
        assert set(rest.image).isdisjoint(held.image) and set(rest.image) | set(held.image) == set(train_df.image)
        assert ("images/train_left_0.png" in set(held.image)) == ("images/train_left_1.png" in set(held.image))
        assert set(held.label) == {"left", "right"}  # stratified
        held_sets.append(set(held.image))
    assert sum(len(h) for h in held_sets) == len(train_df) and set().union(*held_sets) == set(train_df.image)
    with pytest.raises(ValueError, match="calibration-fold"):
        split_calibration_fold(data, train_df, 3, 3, seed=0)


@pytest.mark.parametrize("folds,fold,extra", [(1, 0, {}), (5, 5, {}), (5, -1, {}),
                                              (5, 0, {"lesion_only": True, "lesion": True, "init_from": "m"})])
def test_options_refuse_a_fold_that_cannot_be_held_out(folds: int, fold: int, extra: dict) -> None:
    with pytest.raises(ValueError, match="calibration-folds"):
        TrainConfig(task="toy", calibration_folds=folds, calibration_fold=fold, **extra).check_options()


def test_card_states_the_held_out_calibration_and_no_calibrate_command() -> None:
    from medimg_demo.eval.card import _calibration_line, _data_line

    cal = {"method": "held-out fold", "folds": 10, "fold": 1, "held_out": 51, "cases": 136,
           "held_out_type_accuracy": 0.94, "val_type_accuracy": 0.965, "val_only_temperature": {"type": 0.3}}
    assert "calibration fold (51 images, fold 1 of 10)" in _data_line(cal)

    class Cfg:
        temperature = {"type": 0.5}
        raw = {"calibration": cal}

    line = _calibration_line(Cfg())  # type: ignore[arg-type]
    assert "136 cases this model never trained on" in line and "51 `train` images held out" in line
    assert "out-of-fold" not in line and "calibrate --model" not in line


@pytest.mark.slow
def test_train_never_sees_the_calibration_fold_and_fits_the_temperature_on_it(tmp_path, monkeypatch) -> None:
    import medimg_demo.learn.holdout as holdout_mod
    import medimg_demo.learn.train as train_mod
    from medimg_demo.learn.cv_calibrate import recipe

    data = tmp_path / "toy"
    _toy(data)
    seen: dict[str, set[str]] = {}
    real = train_mod.ManifestDataset

    def spy(folder, frame, *args, desc="", **kwargs):  # noqa: ANN001, ANN202
        seen[desc] = set(frame.image)
        return real(folder, frame, *args, desc=desc, **kwargs)

    monkeypatch.setattr(train_mod, "ManifestDataset", spy)
    monkeypatch.setattr(holdout_mod, "ManifestDataset", spy)
    cfg = train_mod.train(TrainConfig(data=str(data), task="toy", model_id="toy.lite0_v0", out_dir=str(tmp_path / "m"),
                                      pretrained="offline", size=48, epochs=2, warmup_epochs=1, batch_size=8, seed=0,
                                      calibration_folds=3, calibration_fold=2))
    trained, held = seen["decode train"], seen["decode calibration fold"]
    assert held and trained.isdisjoint(held) and len(trained) + len(held) == 24
    saved = json.loads((cfg.folder / "config.json").read_text())
    cal = saved["calibration"]
    assert cal["method"] == "held-out fold" and cal["held_out"] == len(held) and cal["cases"] == len(held) + 8
    assert saved["temperature"]["type"] > 0 and "type" in cal["val_only_temperature"]
    assert saved["training"]["calibration_folds"] == 3 and saved["training"]["calibration_fold"] == 2
    with pytest.raises(ValueError, match="held out of its training"):
        recipe(cfg)  # no cross-validation on top of a held-out fold
