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
    from medimg_demo.learn.folds import fold_assignment, near_duplicate_groups  # the cross-validation's folds

    frame_t = train_df.reset_index(drop=True)
    cv_fold = fold_assignment(frame_t.label.to_numpy(), near_duplicate_groups(data, frame_t.image.tolist()), 3, 0)
    assert [set(frame_t.image[cv_fold == k]) for k in range(3)] == held_sets
    with pytest.raises(ValueError, match="calibration-fold"):
        split_calibration_fold(data, train_df, 3, 3, seed=0)


@pytest.mark.parametrize("folds,fold", [(1, 0), (5, 5), (5, -1), (0, 2)])
def test_options_refuse_a_fold_that_cannot_be_held_out(folds: int, fold: int) -> None:
    with pytest.raises(ValueError, match="calibration-fold"):
        TrainConfig(task="toy", calibration_folds=folds, calibration_fold=fold).check_options()
    TrainConfig(task="toy", calibration_folds=5, calibration_fold=4).check_options()  # a valid one passes
    # a start model and teachers are checked when loaded: each must have held out the same images
    # (tests/learn/test_distill.py)
    TrainConfig(task="toy", calibration_folds=5, calibration_fold=4, distill_from="m", distill_weight=1.0).check_options()
    TrainConfig(task="toy", calibration_folds=5, calibration_fold=4, init_from="m").check_options()
    TrainConfig(task="toy", calibration_folds=5, calibration_fold=4, lesion_only=True, lesion=True,
                init_from="m").check_options()


def test_the_held_out_fold_is_the_same_whatever_the_training_seed() -> None:
    one, two = (TrainConfig(task="toy", seed=s, calibration_folds=10, calibration_fold=1) for s in (0, 7))
    assert one.held_out_fold() == two.held_out_fold() == (10, 1, 0)
    assert TrainConfig(task="toy", seed=7, calibration_folds=10, calibration_fold=1,
                       calibration_seed=3).held_out_fold() == (10, 1, 3)
    with pytest.raises(ValueError, match="give N too"):
        TrainConfig(task="toy", calibration_seed=3).check_options()


def test_a_record_from_before_the_fold_split_seed_reproduces_its_folds() -> None:
    """Such a record split its folds with --seed: its printed command must say so, or the folds would differ."""
    from medimg_demo.learn.config import train_command

    old = {"task": "toy", "seed": 3, "calibration_folds": 10, "calibration_fold": 1}
    assert "--calibration-seed 3" in train_command(old)
    assert "--calibration-seed" not in train_command({**old, "seed": 0})  # the default
    assert "--calibration-seed" not in train_command({"task": "toy", "seed": 3})


def _held_out_model(folder=None):  # noqa: ANN001, ANN202
    from medimg_demo.models.config import InputConfig, ModelConfig

    cal = {"method": "held-out fold", "folds": 10, "fold": 1, "held_out": 52, "cases": 137,
           "held_out_type_accuracy": 0.885, "val_type_accuracy": 0.965, "val_only_temperature": {"type": 0.4}}
    raw = {"calibration": cal, "training": {"task": "toy", "arch": "tf_efficientnet_lite0", "size": 48, "seed": 0,
                                            "calibration_folds": 10, "calibration_fold": 1}}
    inp = InputConfig(size=(48, 48), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    return ModelConfig(id="toy.m_v3", task="toy", arch="tf_efficientnet_lite0", heads={"type": ["left", "right"]},
                       input=inp, temperature={"type": 0.62}, raw=raw, folder=folder)


def test_card_states_the_held_out_calibration_and_train_alone_reproduces_it() -> None:
    from medimg_demo.eval.card_training import calibration_line, data_line, reproduce_commands

    cfg = _held_out_model()
    assert "calibration fold (52 images, fold 2 of 10, `--calibration-fold 1`)" in data_line(cfg.raw["training"],
                                                                                             cfg.raw["calibration"])
    line = calibration_line(cfg)
    assert "137 cases this model never trained on" in line and "52 `train` images held out" in line
    assert "out-of-fold" not in line
    commands = reproduce_commands(cfg, "python -m medimg_demo evaluate --model toy.m_v3")
    assert len(commands) == 2 and "--calibration-folds 10 --calibration-fold 1" in commands[0]
    assert not any("calibrate" in c.split("medimg_demo ")[1].split()[0] for c in commands)
    bcts_cfg = _held_out_model()
    bcts_cfg.raw["calibration"] = {"method": "bcts", "folds": 5}
    bcts_cfg.raw["training"].pop("calibration_folds")
    assert any(c.startswith(f"MEDIMG_MODELS_DIR=runs/reproduce/{bcts_cfg.id} python -m medimg_demo calibrate --method bcts") for c in reproduce_commands(bcts_cfg, "e"))


def test_no_second_calibration_on_top_of_a_held_out_fold(tmp_path) -> None:
    from medimg_demo.learn.bcts import write_bcts
    from medimg_demo.learn.cv_calibrate import recipe

    cfg = _held_out_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(cfg.raw))
    with pytest.raises(ValueError, match="held out of its training"):
        recipe(cfg)
    with pytest.raises(ValueError, match="held out of its training"):
        write_bcts(cfg, None)  # type: ignore[arg-type]
    assert json.loads((tmp_path / "config.json").read_text()) == cfg.raw  # untouched


@pytest.mark.slow
def test_train_never_sees_the_calibration_fold_and_fits_the_temperature_on_it(tmp_path, decoded) -> None:
    import medimg_demo.learn.holdout as holdout_mod
    import medimg_demo.learn.train as train_mod
    from medimg_demo.learn.dataset import ManifestDataset

    data = tmp_path / "toy"
    _toy(data)
    seen, real = decoded, ManifestDataset
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
    # the record names the very images held out, so a later run can check a teacher never trained on them
    assert cal["held_out_sha256"] == holdout_mod.held_out_fingerprint(pd.DataFrame({"image": list(held)}))
    assert cal["held_out_sha256"] != holdout_mod.held_out_fingerprint(pd.DataFrame({"image": list(trained)[:len(held)]}))
    # the temperature is the one the served model's logits on the held-out fold + val ask for (not val's alone)
    from medimg_demo.learn.dataset import predict_logits
    from medimg_demo.models.calibrate import fit_temperature
    from medimg_demo.models.network import load_model

    frame = pd.read_csv(data / "manifest.csv")
    model, heads = load_model(cfg), cfg.heads
    ds = [real(data, frame[frame.image.isin(held)].reset_index(drop=True), heads, cfg.input, augment=None),
          real(data, frame[frame.split == "val"].reset_index(drop=True), heads, cfg.input, augment=None)]
    logits = [predict_logits(model, d)["type"] for d in ds]
    import torch

    expected = fit_temperature(torch.cat(logits), torch.cat([d.targets["type"] for d in ds]))
    assert saved["temperature"]["type"] == pytest.approx(expected, abs=1e-3)
    assert cal["val_only_temperature"]["type"] == pytest.approx(fit_temperature(logits[1], ds[1].targets["type"]), abs=1e-3)
