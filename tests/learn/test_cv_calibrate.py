"""Cross-validated temperature: twins stay in one fold, folds are stratified, the recipe re-runs, the result is pinned."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import two_class_set
from medimg_demo.learn.cv_calibrate import cross_val_temperature, fold_assignment, near_duplicate_groups, recipe, write_calibration
from medimg_demo.learn.train import TrainConfig, train


def _images(folder, arrays) -> list[str]:
    names = []
    for i, arr in enumerate(arrays):
        name = f"img{i}.png"
        Image.fromarray(arr).save(folder / name)
        names.append(name)
    return names


def test_near_duplicate_groups_join_twins_transitively(tmp_path) -> None:
    rng = np.random.default_rng(0)
    a = (rng.random((64, 64)) * 255).astype(np.uint8)
    b = (rng.random((64, 64)) * 255).astype(np.uint8)
    a = np.clip(a, 10, 245)
    a1 = a + 2  # a twin of a (2 grey levels)
    a2 = a + 4  # a twin of a1, not of a (4 grey levels): joined through a1
    far = 255 - a  # same texture, other grey levels: not a twin
    g = near_duplicate_groups(tmp_path, _images(tmp_path, [a, b, a1, far, a2]))
    assert g[0] == g[2] == g[4]
    assert len({g[0], g[1], g[3]}) == 3
    alone = near_duplicate_groups(tmp_path, ["img0.png", "img4.png"])  # without the link they stay apart
    assert alone[0] != alone[1]


def test_folds_keep_groups_together_and_stratify() -> None:
    labels = np.array(["x"] * 30 + ["y"] * 15)
    groups = np.arange(45) // 3  # twins in threes
    fold = fold_assignment(labels, groups, 3, seed=0)
    for grp in np.unique(groups):
        assert len(set(fold[groups == grp])) == 1
    for k in range(3):  # stratified as far as whole groups of 3 allow
        assert abs((labels[fold == k] == "x").sum() - 10) <= 3 and abs((labels[fold == k] == "y").sum() - 5) <= 3


def _toy(root) -> None:
    """Two classes (bright square left or right) with noise that makes a few training calls hard."""
    two_class_set(root, noise=120, square=160, seed=1)


@pytest.mark.slow
def test_cross_val_temperature_reruns_the_recipe_and_pins_the_result(tmp_path) -> None:
    data = tmp_path / "toy"
    _toy(data)
    cfg = train(TrainConfig(data=str(data), task="toy", model_id="toy.lite0_v0", out_dir=str(tmp_path / "models"),
                            pretrained="offline", size=48, epochs=2, warmup_epochs=1, batch_size=8, seed=0))
    base = recipe(cfg)
    assert base.epochs == 2 and base.size == 48 and base.model_id == "toy.lite0_v0"
    result = cross_val_temperature(cfg, folds=2, data=str(data), work_dir=tmp_path)
    assert result.n_cases == 24 + 8 and result.folds == 2
    assert result.temperature["type"] > 0
    assert not list(tmp_path.glob("tmp*"))  # fold models are not kept
    assert len(result.fold_val_accuracy) == 2 and all(0 <= a <= 1 for a in result.fold_val_accuracy)
    write_calibration(cfg, result)
    saved = json.loads((cfg.folder / "config.json").read_text())
    assert saved["temperature"] == result.temperature
    assert saved["calibration"]["folds"] == 2 and saved["calibration"]["cases"] == 32
    assert saved["weights"]["sha256"] == cfg.weights_sha256  # weights untouched


def test_every_train_image_is_predicted_by_the_fold_model_that_left_it_out(tmp_path, monkeypatch) -> None:
    """The out-of-fold property, with training and prediction replaced by fakes that record what they saw."""
    import pandas as pd
    import torch

    import medimg_demo.learn.cv_calibrate as cv
    import medimg_demo.learn.train as train_mod
    from medimg_demo.models.config import InputConfig, ModelConfig

    data = tmp_path / "toy"
    _toy(data)
    twin = data / "images" / "train_left_1.png"
    Image.open(data / "images" / "train_left_0.png").save(twin)  # a twin of train_left_0 in train
    frame = pd.read_csv(data / "manifest.csv")
    train_images = set(frame[frame.split == "train"].image)
    inp = InputConfig(size=(48, 48), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    served = ModelConfig(id="toy.m_v0", task="toy", arch="tf_efficientnet_lite0", heads={"type": ["left", "right"]},
                         input=inp, raw={"training": {"task": "toy", "size": 48, "seed": 0}})
    left_out: list[frozenset[str]] = []
    predicted: list[tuple[int, list[str]]] = []

    def fake_train(run, exclude=frozenset()):  # noqa: ANN001, ANN202
        left_out.append(exclude)
        return ModelConfig(id=run.model_id, task="toy", arch="x", heads=served.heads, input=inp,
                           raw={"fold": len(left_out) - 1})

    def fake_load(cfg):  # noqa: ANN001, ANN202
        return cfg.raw.get("fold", -1)

    def fake_logits(model, ds, bf16=False):  # noqa: ANN001, ANN202
        if model >= 0 and "train" in ds.frame.image.iloc[0]:
            predicted.append((model, ds.frame.image.tolist()))
        # a logit that names its image, so each row of the predictions table can be checked against its own image
        return {"type": torch.tensor([[float(abs(hash(i)) % 9973), -1.0] for i in ds.frame.image])}

    monkeypatch.setattr(train_mod, "train", fake_train)
    monkeypatch.setattr(cv, "load_model", fake_load)
    monkeypatch.setattr(cv, "predict_logits", fake_logits)
    result = cv.cross_val_temperature(served, folds=3, data=str(data), work_dir=tmp_path)
    assert len(left_out) == 3 and set().union(*left_out) == train_images
    assert sum(len(e) for e in left_out) == len(train_images)  # disjoint
    for k, images in predicted:
        assert set(images) == left_out[k]  # predicted only by the model that never trained on them
    twin_fold = [k for k, e in enumerate(left_out) if "images/train_left_0.png" in e]
    assert twin_fold and "images/train_left_1.png" in left_out[twin_fold[0]]
    assert result.n_cases == len(train_images) + 8 and len(result.fold_val_accuracy) == 3
    pred = result.predictions  # what --predictions-out writes: each image once, with the fold that predicted it
    assert len(pred) == result.n_cases and pred.image.is_unique
    assert set(pred[pred.fold == -1].image) == set(frame[frame.split == "val"].image)
    for k, images in enumerate(left_out):
        assert set(pred[pred.fold == k].image) == images
    assert (pred["logit_type_left"] == [float(abs(hash(i)) % 9973) for i in pred.image]).all()  # row = its image
    truth = frame.set_index("image")["label"]
    assert (pred["target_type"] == truth[pred.image].to_numpy()).all()


def test_recipes_taught_by_a_trained_model_are_refused() -> None:
    from medimg_demo.models.config import InputConfig, ModelConfig

    inp = InputConfig(size=(48, 48), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    cfg = ModelConfig(id="t.m_v2", task="toy", arch="a", heads={"type": ["x", "y"]}, input=inp,
                      raw={"training": {"task": "toy", "distill_from": "t.m_v1"}})
    with pytest.raises(ValueError, match="out-of-fold"):
        recipe(cfg)


def test_a_model_built_on_another_is_rebuilt_from_the_start_on_each_fold(tmp_path, monkeypatch) -> None:
    """--init-from: each fold trains the start model's recipe on the fold's images, then this model's recipe from that
    fold model (never from the start model trained on all of train)."""
    import torch

    import medimg_demo.learn.cv_calibrate as cv
    import medimg_demo.learn.train as train_mod
    import medimg_demo.models.registry as registry
    from medimg_demo.models.config import InputConfig, ModelConfig

    data = tmp_path / "toy"
    _toy(data)
    inp = InputConfig(size=(48, 48), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    heads = {"type": ["left", "right"]}

    def model(mid: str, **training: object) -> ModelConfig:
        return ModelConfig(id=mid, task="toy", arch="x", heads=heads, input=inp,
                           raw={"training": {"task": "toy", "size": 48, "seed": 0, "model_id": mid, **training}})

    start, served = model("toy.m_v1", epochs=3), model("toy.m_v2", epochs=2, init_from="toy.m_v1")
    runs: list[tuple[str, str, int, frozenset[str]]] = []

    def fake_train(run, exclude=frozenset()):  # noqa: ANN001, ANN202
        runs.append((run.model_id, run.init_from, run.epochs, exclude))
        return ModelConfig(id=run.model_id, task="toy", arch="x", heads=heads, input=inp, raw={})

    monkeypatch.setattr(registry, "get_model", lambda mid=None, root=None: {"toy.m_v1": start}[mid])
    monkeypatch.setattr(train_mod, "train", fake_train)
    monkeypatch.setattr(cv, "load_model", lambda cfg: None)
    monkeypatch.setattr(cv, "predict_logits", lambda m, ds, bf16=False: {"type": torch.zeros(len(ds.frame), 2)})
    assert [r.model_id for r in cv.recipe_chain(served)] == ["toy.m_v1", "toy.m_v2"]
    result = cv.cross_val_temperature(served, folds=2, data=str(data), work_dir=tmp_path)
    assert [(m, i, e) for m, i, e, _ in runs] == [("toy.m_v1.fold0", "", 3), ("toy.m_v2.fold0", "toy.m_v1.fold0", 2),
                                                  ("toy.m_v1.fold1", "", 3), ("toy.m_v2.fold1", "toy.m_v1.fold1", 2)]
    assert runs[0][3] == runs[1][3] and runs[2][3] == runs[3][3] and not runs[0][3] & runs[2][3]
    assert result.record()["recipes_per_fold"] == ["toy.m_v1", "toy.m_v2"]
    other_task = ModelConfig(id="toy.m_v1", task="lung_ct", arch="x", heads=heads, input=inp, raw=start.raw)
    with pytest.raises(ValueError, match="a lung_ct model"):
        cv.recipe_chain(served, lookup=lambda mid: other_task)


def test_init_from_finds_a_model_in_the_run_s_out_folder_first(tiny_registry, tmp_path, monkeypatch) -> None:
    import json
    import shutil

    from medimg_demo.errors import ModelError
    from medimg_demo.learn.start import start_model

    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(tmp_path / "registry"))  # the registry does not hold it
    (tmp_path / "registry").mkdir()
    assert start_model("lung_ct.tiny_v0", tiny_registry).id == "lung_ct.tiny_v0"
    with pytest.raises(ModelError, match="No models found"):
        start_model("lung_ct.tiny_v0", tmp_path / "elsewhere")
    # the same id in --out and in the registry: one model (same weights) is fine, two different ones are refused
    out = tmp_path / "out"
    shutil.copytree(tiny_registry, out)
    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(tiny_registry))
    assert start_model("lung_ct.tiny_v0", out).folder == out / "lung_ct.tiny_v0"
    config = out / "lung_ct.tiny_v0" / "config.json"
    record = json.loads(config.read_text())
    record["weights"]["sha256"] = "f" * 64
    config.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="hold different models"):
        start_model("lung_ct.tiny_v0", out)


def test_trailing_folds_are_flagged() -> None:
    from medimg_demo.learn.cv_calibrate import CvCalibration

    close = CvCalibration({"type": 0.5}, {"type": 0.3}, 3, 592, 0.95, 0.965, (0.95, 0.96, 0.94))
    weak = CvCalibration({"type": 0.7}, {"type": 0.3}, 3, 592, 0.85, 0.965, (0.859, 0.95, 0.96))
    assert not close.folds_trail and weak.folds_trail
    assert weak.record()["fold_val_type_accuracy"] == [0.859, 0.95, 0.96]


def test_train_leaves_out_excluded_images(tmp_path, monkeypatch) -> None:
    """``exclude`` removes those images from train before any decoding (the fold's held-out images)."""
    import medimg_demo.learn.train as train_mod

    data = tmp_path / "toy"
    _toy(data)
    seen: list[int] = []

    class _Stop(Exception):
        pass

    def fake_dataset(folder, df, *a, **k):  # noqa: ANN001, ANN002, ANN003
        seen.append(len(df))
        raise _Stop

    monkeypatch.setattr(train_mod, "ManifestDataset", fake_dataset)
    cfg = TrainConfig(data=str(data), task="toy", out_dir=str(tmp_path / "m"), pretrained="none", size=48)
    with pytest.raises(_Stop):
        train(cfg, exclude=frozenset({"images/train_left_0.png", "images/train_right_3.png"}))
    assert seen == [22]
    with pytest.raises(ValueError, match="not in train"):
        train(cfg, exclude=frozenset({"images/val_left_0.png"}))
    with pytest.raises(ValueError, match="go together"):
        train(TrainConfig(data=str(data), task="toy", out_dir=str(tmp_path / "m"), pretrained="none", size=48,
                          distill_weight=1.0))


def test_full_schedule_turns_early_stopping_off_for_the_folds(tmp_path, monkeypatch) -> None:
    """``full_schedule``: each fold model may run every epoch (patience beyond the schedule); the record says so."""
    import torch

    import medimg_demo.learn.cv_calibrate as cv
    import medimg_demo.learn.train as train_mod
    from medimg_demo.eval.card_training import calibrate_command, calibration_line
    from medimg_demo.models.config import InputConfig, ModelConfig

    data = tmp_path / "toy"
    _toy(data)
    inp = InputConfig(size=(48, 48), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    served = ModelConfig(id="toy.m_v0", task="toy", arch="tf_efficientnet_lite0", heads={"type": ["left", "right"]},
                         input=inp, raw={"training": {"task": "toy", "size": 48, "seed": 0, "epochs": 18,
                                                      "warmup_epochs": 2, "patience": 6}})
    runs = []

    def fake_train(run, exclude=frozenset()):  # noqa: ANN001, ANN202
        runs.append(run)
        return ModelConfig(id=run.model_id, task="toy", arch="x", heads=served.heads, input=inp, raw={})

    monkeypatch.setattr(train_mod, "train", fake_train)
    monkeypatch.setattr(cv, "load_model", lambda cfg: None)
    monkeypatch.setattr(cv, "predict_logits", lambda model, ds, bf16=False: {"type": torch.randn(len(ds), 2)})
    plain = cv.cross_val_temperature(served, folds=2, data=str(data), work_dir=tmp_path)
    assert [r.patience for r in runs] == [6, 6] and "full_schedule" not in plain.record()
    runs.clear()
    full = cv.cross_val_temperature(served, folds=2, data=str(data), work_dir=tmp_path, full_schedule=True)
    assert all(r.patience > r.epochs + r.warmup_epochs and r.epochs == 18 for r in runs) and len(runs) == 2
    record = full.record()
    assert record["full_schedule"] is True
    cfg = ModelConfig(id="toy.m_v0", task="toy", arch="a", heads=served.heads, input=inp,
                      temperature={"type": 0.5}, raw={"calibration": record})
    assert calibrate_command(cfg, record).endswith("--folds 2 --full-schedule --write")
    assert "no early stop" in calibration_line(cfg)
    assert "--full-schedule" not in calibrate_command(cfg, plain.record())
