"""Training on train + val (``--train-on-val``): val selects nothing, the temperature comes from images the model never
trained on (a fold of the pool held out, or a sibling run's), and nothing later scores or calibrates on val."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import two_class_set
from medimg_demo.errors import ModelError
from medimg_demo.learn.config import HELD_OUT, SIBLING, TrainConfig


@pytest.mark.parametrize("extra,match", [
    ({}, "either --calibration-folds"),
    ({"calibration_folds": 5, "temperature_from": "m"}, "either --calibration-folds"),
    ({"temperature_from": "m", "init_from": "m"}, "ImageNet"),
    ({"temperature_from": "m", "distill_from": "t", "distill_weight": 1.0}, "ImageNet"),
    ({"temperature_from": "m", "head_only": True, "init_from": "s"}, "ImageNet"),
    ({"temperature_from": "m", "lesion_only": True, "lesion": True, "init_from": "s"}, "ImageNet"),
    ({"temperature_from": "m", "select_erasure": 0.3}, "last epoch"),
    ({"temperature_from": "toy.b", "model_id": "toy.b"}, "own --id"),
])
def test_options_refuse_a_pool_run_with_nothing_held_out_or_something_seen(extra: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(task="toy", train_on_val=True, **extra).check_options()
    TrainConfig(task="toy", train_on_val=True, calibration_folds=10).check_options()  # valid ones pass
    TrainConfig(task="toy", train_on_val=True, temperature_from="m").check_options()


def test_a_temperature_is_copied_only_into_a_pool_run() -> None:
    with pytest.raises(ValueError, match="--temperature-from is for a --train-on-val run"):
        TrainConfig(task="toy", temperature_from="m").check_options()


def _pool_model(method: str):  # noqa: ANN202
    from medimg_demo.models.config import InputConfig, ModelConfig

    training = {"task": "toy", "arch": "tf_efficientnet_lite0", "size": 48, "seed": 0, "train_on_val": True,
                "model_id": "toy.pool_b"}
    if method == HELD_OUT:
        training.update(calibration_folds=10, model_id="toy.pool_a")
        cal = {"method": HELD_OUT, "folds": 10, "fold": 0, "held_out": 59, "cases": 59, "held_out_type_accuracy": 0.932,
               "pool": "train + val"}
    else:
        training["temperature_from"] = "toy.pool_a"
        cal = {"method": SIBLING, "model": "toy.pool_a", "folds": 10, "fold": 0, "held_out": 59,
               "held_out_type_accuracy": 0.932,
               "train_command": "python -m medimg_demo train --task toy --id toy.pool_a --calibration-folds 10 "
                                "--train-on-val"}
    inp = InputConfig(size=(48, 48), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    return ModelConfig(id=training["model_id"], task="toy", arch="tf_efficientnet_lite0",
                       heads={"type": ["left", "right"]}, input=inp, temperature={"type": 0.62},
                       raw={"calibration": cal, "training": training})


def test_cards_say_val_was_trained_on_and_print_the_sibling_first() -> None:
    from medimg_demo.eval.card_training import calibration_line, data_line, reproduce_commands

    a, b = _pool_model(HELD_OUT), _pool_model(SIBLING)
    line = data_line(a.raw["training"], a.raw["calibration"])
    assert "`train` + `val` less a calibration fold (59 images" in line and "last epoch kept" in line
    assert "temperature on that fold alone" in line
    assert "59 images this model never trained on: a fold of `train` + `val`" in calibration_line(a)
    assert "plus `val`" not in calibration_line(a)
    line = data_line(b.raw["training"], b.raw["calibration"])
    assert "all of `train` + `val`" in line and "copied from `toy.pool_a`" in line
    assert "copied from `toy.pool_a`" in calibration_line(b) and "accuracy 0.932" in calibration_line(b)
    commands = reproduce_commands(b, "python -m medimg_demo evaluate --model toy.pool_b --split test")
    assert len(commands) == 3 and "--id toy.pool_a" in commands[0] and "--temperature-from toy.pool_a" in commands[1]
    assert "--train-on-val" in commands[1] and not any(" calibrate " in c for c in commands)
    assert len(reproduce_commands(a, "e")) == 2  # the temperature comes from train itself


def test_nothing_scores_or_calibrates_on_val_once_val_was_trained_on(tmp_path) -> None:
    from medimg_demo.eval.evaluate import evaluate
    from medimg_demo.learn.bcts import fit_bcts
    from medimg_demo.learn.cv_calibrate import cross_val_temperature
    from medimg_demo.learn.gate import split_outputs

    from medimg_demo.eval.gate_report import fit_gate

    import dataclasses

    cfg = dataclasses.replace(_pool_model(SIBLING), folder=tmp_path)
    for call in (lambda: evaluate(cfg, tmp_path, "val"), lambda: fit_bcts(cfg, data=str(tmp_path)),
                 lambda: fit_gate(cfg, tmp_path, tmp_path),
                 lambda: cross_val_temperature(cfg, folds=3, data=str(tmp_path)),
                 lambda: split_outputs(None, cfg, tmp_path, "val")):  # type: ignore[arg-type]
        with pytest.raises(ModelError, match="trained on val"):
            call()
    with pytest.raises(ModelError, match="evaluate it on test"):
        from medimg_demo.eval.cache import evaluate_cached

        evaluate_cached(cfg, tmp_path, "val", tmp_path / "runs")  # not even from the cache
    held_out_val = _pool_model(HELD_OUT)
    held_out_val.raw["training"]["train_on_val"] = False
    held_out_val.refuse_in_sample_val("evaluating", "")  # a model that held val out may use it


def test_a_model_trained_on_val_is_no_start_or_teacher_of_a_run_that_selects_on_val(tmp_path) -> None:
    from medimg_demo.learn.start import start_model

    cfg = _pool_model(HELD_OUT)
    folder = tmp_path / cfg.id
    folder.mkdir()
    raw = {**cfg.raw, "id": cfg.id, "task": "toy", "arch": cfg.arch, "heads": cfg.heads,
           "input": {"size": [48, 48], "mean": [0.5] * 3, "std": [0.5] * 3}, "temperature": cfg.temperature}
    (folder / "config.json").write_text(json.dumps(raw))
    for option in ("--init-from", "--distill-from"):
        with pytest.raises(ValueError, match=f"{option} toy.pool_a: it was trained on val"):
            start_model(cfg.id, tmp_path, option=option)
    assert start_model(cfg.id, tmp_path, option="--temperature-from").trained_on_val


@pytest.mark.slow
def test_a_pool_run_trains_on_val_keeps_the_last_epoch_and_its_sibling_copies_the_temperature(tmp_path, decoded,
                                                                                            monkeypatch) -> None:
    import torch

    import medimg_demo.learn.train as train_mod
    from medimg_demo.learn.dataset import ManifestDataset, predict_logits
    from medimg_demo.models.calibrate import fit_temperature
    from medimg_demo.models.network import load_model

    data = tmp_path / "toy"
    two_class_set(data, noise=120, square=160, seed=1)
    frame = pd.read_csv(data / "manifest.csv")
    seen, real = decoded, ManifestDataset
    recipe = dict(data=str(data), task="toy", out_dir=str(tmp_path / "m"), pretrained="offline", size=48, epochs=2,
                  warmup_epochs=1, batch_size=8, seed=0, train_on_val=True, patience=1, min_epochs=0)
    scores, real_score = iter([0.9, 0.5, 0.1]), train_mod.selection_score
    monkeypatch.setattr(train_mod, "selection_score", lambda *a, **k: next(scores))  # falling: a run that selects
    a = train_mod.train(TrainConfig(model_id="toy.pool_a", calibration_folds=4, calibration_fold=1, **recipe))
    monkeypatch.setattr(train_mod, "selection_score", real_score)  # would keep epoch 1 and stop early (patience 1)
    trained, held = seen["decode train"], seen["decode calibration fold"]
    val = set(frame.image[frame.split == "val"])
    assert held and trained.isdisjoint(held) and trained | held == set(frame.image)  # val is in the pool
    assert seen["decode val"] == held  # the epochs are scored on the held-out fold, not on val
    assert val & trained and not val <= held
    saved = json.loads((a.folder / "config.json").read_text())
    assert saved["selected_epoch"] == 3 and len(pd.read_csv(a.folder / "training_log.csv")) == 3  # last kept, no stop
    assert "held_out_at_last_epoch" in saved and "val_at_selection" not in saved
    cal = saved["calibration"]
    assert cal["method"] == HELD_OUT and cal["held_out"] == cal["cases"] == len(held) and cal["pool"] == "train + val"
    ds = real(data, frame[frame.image.isin(held)].reset_index(drop=True), a.heads, a.input, augment=None)
    expected = fit_temperature(predict_logits(load_model(a), ds)["type"], ds.targets["type"])
    assert saved["temperature"]["type"] == pytest.approx(expected, abs=1e-3)  # on the held-out fold alone

    seen.clear()
    b = train_mod.train(TrainConfig(model_id="toy.pool_b", temperature_from="toy.pool_a", **recipe))
    assert seen["decode train"] == set(frame.image) and "decode calibration fold" not in seen
    saved_b = json.loads((b.folder / "config.json").read_text())
    assert saved_b["temperature"] == saved["temperature"] and saved_b["selected_epoch"] == 3
    assert saved_b["calibration"]["method"] == SIBLING and saved_b["calibration"]["model"] == "toy.pool_a"
    assert "--calibration-folds 4 --calibration-fold 1" in saved_b["calibration"]["train_command"]
    assert not torch.equal(*(load_model(m).heads["head_type"].weight for m in (a, b)))  # trained anew, not copied

    assert saved_b["calibration"]["weights_sha256"] == a.weights_sha256

    seen.clear()
    with pytest.raises(ValueError, match=r"differs from this run's in lr_head \(0.001 vs 0.01\)"):
        train_mod.train(TrainConfig(model_id="toy.pool_c", temperature_from="toy.pool_a",
                                    **{**recipe, "lr_head": 0.01}))
    with pytest.raises(ValueError, match="not fitted on a fold"):
        train_mod.train(TrainConfig(model_id="toy.pool_d", temperature_from="toy.pool_b", **recipe))
    import shutil

    shutil.copytree(data, tmp_path / "other")  # the same images under another data set's name
    with pytest.raises(ValueError, match=r"data \('toy' vs 'other'\)"):
        train_mod.train(TrainConfig(model_id="toy.pool_e", temperature_from="toy.pool_a",
                                    **{**recipe, "data": str(tmp_path / "other")}))
    frame[frame.image != sorted(held)[0]].to_csv(data / "manifest.csv", index=False)  # one held-out image gone
    with pytest.raises(ValueError, match="not a fold of this run's train"):
        train_mod.train(TrainConfig(model_id="toy.pool_f", temperature_from="toy.pool_a", **recipe))
    assert not seen  # each refused before any image was decoded


def test_a_whole_card_of_a_model_trained_on_val_never_says_val_selected_it() -> None:
    import dataclasses

    from medimg_demo.eval.card import render
    from medimg_demo.models.registry import list_models

    cfg = next(m for m in list_models() if m.task == "lung_ct")
    pool = _pool_model(SIBLING)
    training = {**cfg.raw["training"], **pool.raw["training"], "ema_halflife": 1.0}
    fake = dataclasses.replace(cfg, raw={**cfg.raw, "training": training, "calibration": pool.raw["calibration"]})
    metrics = pd.read_csv(cfg.folder / "metrics" / "metrics.csv", keep_default_na=False, na_values=[""])
    card = render(fake, metrics, "test", 125, "python -m medimg_demo evaluate")
    assert "Last epoch kept (val was trained on):" in card and "Selected epoch" not in card
    assert "the weights saved and calibrated are an exponential moving average" in card
    assert "scored on val" not in card and "copied from `toy.pool_a`" in card
