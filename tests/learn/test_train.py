"""Training writes a loadable, pinned model folder; calibration computes what it claims."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import two_class_set
from medimg_demo.models.calibrate import fit_temperature
from medimg_demo.models.network import load_model
from medimg_demo.learn.train import TrainConfig, train


def _synthetic_set(root, n_per_class: int = 12):
    """Two classes that differ by a bright square's side (left vs right)."""
    two_class_set(root, n_per_class)


@pytest.mark.slow
def test_train_smoke_writes_pinned_model(tmp_path) -> None:
    data = tmp_path / "toy"
    _synthetic_set(data)
    cfg = TrainConfig(
        data=str(data), task="toy", model_id="toy.lite0_v0", out_dir=str(tmp_path / "models"),
        pretrained="offline", size=48, epochs=3, warmup_epochs=1, batch_size=8, seed=0,
    )
    mc = train(cfg)
    d = json.loads((mc.folder / "config.json").read_text())
    assert d["heads"] == {"type": ["left", "right"]}
    assert d["weights"]["sha256"] and d["temperature"]["type"] > 0
    assert d["training"]["seed"] == 0 and d["training"]["pretrained"] == "offline"
    log = pd.read_csv(mc.folder / "training_log.csv")
    assert len(log) >= 2 and log["train_loss"].notna().all()
    model = load_model(mc)
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 48, 48))
    assert out["type"].shape == (1, 2)


def _lesion_set(root, n: int = 16) -> None:
    """Bright squares ("lesion") at random places with their masks, and plain noise ("normal")."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for split, count in (("train", n), ("val", 4)):
        for label in ("lesion", "normal"):
            for i in range(count):
                arr = (rng.random((48, 48)) * 60).astype(np.uint8)
                mask = np.zeros((48, 48), np.uint8)
                if label == "lesion":
                    y, x = rng.integers(4, 30, size=2)
                    arr[y:y + 14, x:x + 14] = 230
                    mask[y:y + 14, x:x + 14] = 255
                name = f"{split}_{label}_{i}.png"
                Image.fromarray(arr).save(root / "images" / name)
                Image.fromarray(mask).save(root / "masks" / name)
                rows.append({"image": f"images/{name}", "label": label, "split": split, "mask": f"masks/{name}"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)


@pytest.mark.slow
def test_train_with_lesion_head_and_guidance(tmp_path) -> None:
    """--lesion trains a lesion head (its val Dice is logged and rises), the guidance term runs, and the model
    folder describes the head, which loads and outputs a lesion map."""
    data = tmp_path / "toy"
    _lesion_set(data)
    cfg = TrainConfig(
        data=str(data), task="toy", model_id="toy.lesion_v0", out_dir=str(tmp_path / "models"), pretrained="offline",
        size=48, epochs=4, warmup_epochs=1, batch_size=8, seed=0, lesion=True, guidance_weight=1.0, patience=10,
    )
    mc = train(cfg)
    d = json.loads((mc.folder / "config.json").read_text())
    assert d["lesion"]["taps"] == [1, 2, 4, 6] and d["training"]["lesion"] is True
    log = pd.read_csv(mc.folder / "training_log.csv")
    assert "lesion_dice" in log and log["lesion_dice"].iloc[-1] > log["lesion_dice"].iloc[0]
    model = load_model(mc)
    with torch.no_grad():
        features, lesion = model.features_and_lesion(torch.zeros(1, 3, 48, 48))
    assert lesion is not None and lesion.shape == (1, 1, 12, 12)


def test_guidance_loss_wants_the_evidence_to_peak_on_the_lesion() -> None:
    from medimg_demo.learn.losses import guidance_loss, lesion_loss

    weight = torch.ones(2, 1)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., :4, :4] = 1  # the lesion fills the top-left cell of a 4 x 4 map
    on = torch.full((1, 1, 4, 4), -10.0)
    on[0, 0, 0, 0] = 10.0  # evidence peaks on the lesion
    off = torch.full((1, 1, 4, 4), -10.0)
    off[0, 0, 3, 3] = 10.0  # evidence peaks elsewhere
    none = torch.full((1, 1, 4, 4), -10.0)  # no positive evidence anywhere: points nowhere, so it is not rewarded
    y = torch.tensor([0])
    assert float(guidance_loss(on, weight, y, mask)) < 1e-3
    assert float(guidance_loss(off, weight, y, mask)) > 10
    assert float(guidance_loss(none, weight, y, mask)) == pytest.approx(-np.log(1 / 16), abs=1e-3)
    assert float(guidance_loss(off, weight, y, torch.zeros_like(mask))) == 0.0  # no lesion: no term
    perfect = torch.full((1, 1, 4, 4), -20.0)
    perfect[..., :1, :1] = 20.0
    loss, dice = lesion_loss(perfect, mask)
    assert float(dice) > 0.99 and float(loss) < 0.05


def test_temperature_scaling_softens_overconfident_logits() -> None:
    torch.manual_seed(0)
    y = torch.randint(0, 3, (300,))
    logits = torch.randn(300, 3)
    logits[torch.arange(300), y] += 1.0  # right most of the time, but not always
    t = fit_temperature(logits * 8, y)  # made 8x overconfident
    assert t > 3.0


def _toy_run(tmp_path, monkeypatch, **over) -> dict:
    """The lesion toy set and a models folder the registry reads: the common training options of the tests below."""
    data = tmp_path / "toy"
    _lesion_set(data)
    models = tmp_path / "models"
    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(models))
    return {**dict(data=str(data), task="toy", out_dir=str(models), pretrained="offline", size=48, batch_size=8,
                   seed=0, lesion=True, patience=10), **over}


@pytest.mark.slow
def test_lesion_only_retrains_the_lesion_head_and_nothing_else(tmp_path, monkeypatch) -> None:
    """--lesion-only from a trained model: every tensor outside the lesion head is bit-identical to the start model's,
    so its calls and calibration are too; the lesion head's tensors change; epochs are selected on the lesion score."""
    from safetensors.torch import load_file

    common = _toy_run(tmp_path, monkeypatch)
    start = train(TrainConfig(model_id="toy.lesion_v0", epochs=1, warmup_epochs=1, **common))
    with pytest.raises(ValueError, match="--init-from"):
        train(TrainConfig(model_id="toy.lesion_v1", epochs=1, warmup_epochs=0, lesion_only=True, **common))
    with pytest.raises(ValueError, match="classifier"):
        train(TrainConfig(model_id="toy.lesion_v1", epochs=1, lesion_only=True, init_from="toy.lesion_v0",
                          guidance_weight=0.5, **common))
    with pytest.raises(ValueError, match="differ"):  # a different input would make the calls not the start's
        train(TrainConfig(model_id="toy.lesion_v1", epochs=1, lesion_only=True, init_from="toy.lesion_v0",
                          **{**common, "size": 64}))
    with pytest.raises(ValueError, match="--lesion"):
        train(TrainConfig(model_id="toy.lesion_v1", epochs=1, projection_weight=1.0, **{**common, "lesion": False}))
    mc = train(TrainConfig(model_id="toy.lesion_v1", epochs=2, warmup_epochs=1, lesion_only=True, projection_weight=1.0,
                           init_from="toy.lesion_v0", **common))
    before, after = load_file(str(start.weights_path)), load_file(str(mc.weights_path))
    assert before.keys() == after.keys()
    for name in before:
        same = torch.equal(before[name], after[name])
        assert same != name.startswith("lesion."), name
    assert mc.temperature == start.temperature
    log = pd.read_csv(mc.folder / "training_log.csv")
    assert log["train_loss"].notna().all() and len(log) == 3
    assert (log["type_acc"] == log["type_acc"].iloc[0]).all()
    # mask annotations: epochs are selected on the val Dice alone (classification scores do not move)
    assert json.loads((mc.folder / "config.json").read_text())["selected_epoch"] == int(log["lesion_dice"].idxmax()) + 1


@pytest.mark.slow
def test_lesion_only_at_another_width_trains_a_new_lesion_head_and_keeps_the_rest(tmp_path, monkeypatch) -> None:
    """--lesion-only --lesion-channels N (not the start model's width): the start's lesion head is dropped and a new
    one of N channels trained; every other tensor is bit-identical; the record and the served model have N channels.
    Without --lesion-only another width is refused (the start's head would not fit)."""
    from safetensors.torch import load_file

    from medimg_demo.models.network import load_model

    common = _toy_run(tmp_path, monkeypatch)
    start = train(TrainConfig(model_id="toy.width_v0", epochs=1, warmup_epochs=1, **common))
    with pytest.raises(ValueError, match="do not fit"):
        train(TrainConfig(model_id="toy.width_v1", epochs=1, init_from="toy.width_v0", lesion_channels=16, **common))
    mc = train(TrainConfig(model_id="toy.width_v1", epochs=1, warmup_epochs=0, lesion_only=True, lesion_channels=16,
                           init_from="toy.width_v0", **common))
    before, after = load_file(str(start.weights_path)), load_file(str(mc.weights_path))
    assert {k for k in before if not k.startswith("lesion.")} == {k for k in after if not k.startswith("lesion.")}
    for name in after:
        if name.startswith("lesion."):
            assert before[name].shape != after[name].shape or after[name].numel() <= 1, name  # (a bias, a counter)
        else:
            assert torch.equal(before[name], after[name]), name
    assert after["lesion.out.weight"].shape == (1, 16, 1, 1)
    assert mc.lesion is not None and mc.lesion.channels == 16 and mc.temperature == start.temperature
    model = load_model(mc)
    assert model.lesion is not None and model.lesion.out.in_channels == 16
    # from the narrower model, without --lesion-channels: its width is kept (its head trained on, not replaced)
    again = train(TrainConfig(model_id="toy.width_v2", epochs=1, warmup_epochs=0, lesion_only=True,
                              init_from="toy.width_v1", **common))
    assert again.lesion is not None and again.lesion.channels == 16
    assert load_file(str(again.weights_path))["lesion.out.weight"].shape == (1, 16, 1, 1)


@pytest.mark.slow
def test_head_only_retrains_the_classifier_and_nothing_else(tmp_path, monkeypatch) -> None:
    """--head-only from a trained model: the backbone and the lesion head (BatchNorm statistics included) are
    bit-identical to the start model's, the classifier's tensors change, and its temperature is refitted on val."""
    from safetensors.torch import load_file

    common = _toy_run(tmp_path, monkeypatch)
    start = train(TrainConfig(model_id="toy.head_v0", epochs=1, warmup_epochs=1, **common))
    with pytest.raises(ValueError, match="--init-from"):
        train(TrainConfig(model_id="toy.head_v1", epochs=1, warmup_epochs=0, head_only=True, **common))
    with pytest.raises(ValueError, match="--lesion-only"):
        train(TrainConfig(model_id="toy.head_v1", epochs=1, head_only=True, lesion_only=True, init_from="toy.head_v0",
                          **common))
    mc = train(TrainConfig(model_id="toy.head_v1", epochs=2, warmup_epochs=0, head_only=True, init_from="toy.head_v0",
                           guidance_weight=0.5, lr_head=0.01, **common))
    before, after = load_file(str(start.weights_path)), load_file(str(mc.weights_path))
    assert before.keys() == after.keys()
    for name in before:
        same = torch.equal(before[name], after[name])
        assert same != name.startswith("heads."), name
    assert json.loads((mc.folder / "config.json").read_text())["training"]["head_only"] is True


def test_projection_loss_scores_the_extent_not_the_fill() -> None:
    """BoxInst's projection term: a cross spanning the box exactly scores (near) zero though it fills little of it;
    the same cross shifted off the box scores high; lesion-free images do not count."""
    from medimg_demo.learn.losses import projection_loss

    box = torch.zeros(2, 1, 16, 16)
    box[0, 0, 4:12, 2:10] = 1
    cross = torch.full((2, 1, 16, 16), -12.0)
    cross[0, 0, 7, 2:10] = 12.0
    cross[0, 0, 4:12, 5] = 12.0
    assert float(projection_loss(cross, box)) < 0.02
    shifted = torch.roll(cross, shifts=(4, 5), dims=(2, 3))
    assert float(projection_loss(shifted, box)) > 0.3
    assert float(projection_loss(cross, torch.zeros_like(box))) == 0.0
    logits = cross.clone().requires_grad_(True)
    projection_loss(torch.roll(logits, shifts=(4, 5), dims=(2, 3)), box).backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0


def test_pair_loss_asks_a_margin_for_the_lesion_and_nothing_for_elsewhere() -> None:
    """The lesion-removed twin must lean further to no tumor by the margin; an elsewhere twin must not move; a prior
    shift that moves image and twin alike gains nothing."""
    from medimg_demo.learn.losses import no_tumor_log_odds, pair_loss

    image = torch.tensor([[2.0, 0.0, -1.0], [2.0, 0.0, -1.0]])  # classes: benign, malignant, normal (index 2)
    kind = torch.tensor([1, 0])
    assert float(pair_loss(image, image.clone(), kind, 2, 3.0)) == pytest.approx(3.0)  # no response: the full margin
    moved = image.clone()
    moved[0, 2] += 5.0  # the lesion-removed twin leans to normal by 5 > 3: no hinge left
    assert float(pair_loss(image, moved, kind, 2, 3.0)) == pytest.approx(0.0, abs=1e-6)
    moved[1, 2] += 1.0  # the elsewhere twin moved too: penalised by how far its log-odds moved
    d = float(no_tumor_log_odds(moved[1:], 2) - no_tumor_log_odds(image[1:], 2))
    assert float(pair_loss(image, moved, kind, 2, 3.0)) == pytest.approx(abs(d)) and d > 0.5
    shifted = image + torch.tensor([0.0, 0.0, 4.0])  # a prior for normal on both: the pair does not change
    assert float(pair_loss(shifted, shifted + 0.0, kind, 2, 3.0)) == pytest.approx(3.0)
    assert float(pair_loss(image, image, torch.tensor([-1, -1]), 2, 3.0)) == 0.0
    # --pair-elsewhere weighs the elsewhere part only
    assert float(pair_loss(image, moved, kind, 2, 3.0, elsewhere_weight=3.0)) == pytest.approx(3 * abs(d))
    assert float(pair_loss(image, image.clone(), kind, 2, 3.0, elsewhere_weight=3.0)) == pytest.approx(3.0)


@pytest.mark.parametrize("infill", ["mixed", "patch", "patch_smooth", "varied"])
def test_twin_in_fills_the_lesion_or_a_region_elsewhere_and_keeps_the_rest(infill: str) -> None:
    from medimg_demo.learn.counterfactual import TWIN_ELSEWHERE, TWIN_LESION, TWIN_NONE, twin

    rng = np.random.default_rng(0)
    img = (np.random.default_rng(1).random((64, 64)) * 0.2).astype(np.float32)
    lesion = np.zeros((64, 64), bool)
    lesion[10:22, 10:22] = True
    img[lesion] = 1.0
    kinds = set()
    for _ in range(20):
        out, kind = twin(img, lesion, rng, infill)
        kinds.add(kind)
        if kind == TWIN_LESION:
            assert out[lesion].mean() < 0.5  # the bright lesion is gone
        elif kind == TWIN_ELSEWHERE:
            assert out[lesion].mean() == pytest.approx(1.0)  # the lesion is untouched, something else changed
            assert not np.allclose(out, img)
    assert kinds == {TWIN_LESION, TWIN_ELSEWHERE}
    with pytest.raises(ValueError, match="in-fill"):
        twin(img, lesion, rng, "border")
    same, kind = twin(img, np.zeros_like(lesion), rng)
    assert kind == TWIN_NONE and same is img


def test_lateral_cover_takes_the_strip_beside_the_lesion_at_the_same_rows() -> None:
    from medimg_demo.learn.counterfactual import lateral

    img = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32)[:, None], (1, 64))  # brighter with depth, as attenuation
    img[20:30, 20:30] = 5.0  # the lesion
    lesion = np.zeros((64, 64), bool)
    lesion[20:30, 20:30] = True
    out = lateral(img, lesion, np.random.default_rng(0))
    assert out[20:30, 20:30].max() < 1.1  # the lesion is gone
    depth = np.broadcast_to(img[22:28, :1], (6, 6))  # each row's own value: the strip beside it, at the same depth
    assert np.allclose(out[22:28, 22:28], depth, atol=0.02)
    untouched = np.ones((64, 64), bool)
    untouched[17:33, 17:33] = False  # the padded box
    assert np.array_equal(out[untouched], img[untouched])
    region = np.zeros((64, 64), bool)
    region[20:30, 38:48] = True  # a region elsewhere, beside the lesion: its left strip would take the lesion in
    for seed in range(8):
        beside = lateral(img, region, np.random.default_rng(seed), avoid=lesion)
        assert beside[20:30, 38:48].max() < 1.1 and np.array_equal(beside[lesion], img[lesion])
    wide = np.zeros((64, 64), bool)
    wide[20:30, 2:60] = True  # no room on either side: falls back to a patch cover
    assert not np.array_equal(lateral(img, wide, np.random.default_rng(0)), img)


@pytest.mark.slow
def test_pair_margin_trains_with_twins_and_refuses_label_switching(tmp_path, monkeypatch) -> None:
    common = _toy_run(tmp_path, monkeypatch, task="breast_us", epochs=1, warmup_epochs=0)  # breast: "normal" is no tumor
    with pytest.raises(ValueError, match="--erase-lesion"):
        train(TrainConfig(model_id="toy.pair_v0", pair_margin=2.0, erase_lesion=0.3, **common))
    with pytest.raises(ValueError, match="--lesion"):
        train(TrainConfig(model_id="toy.pair_v0", pair_margin=2.0, **{**common, "lesion": False}))
    with pytest.raises(ValueError, match="--pair-elsewhere"):
        train(TrainConfig(model_id="toy.pair_v0", pair_margin=2.0, pair_elsewhere=-1.0, **common))
    mc = train(TrainConfig(model_id="toy.pair_v0", pair_margin=2.0, **common))
    log = pd.read_csv(mc.folder / "training_log.csv")
    assert len(log) == 1 and np.isfinite(log["train_loss"]).all()
    assert json.loads((mc.folder / "config.json").read_text())["training"]["pair_margin"] == 2.0


def test_early_model_checks_leave_the_rng_where_recorded_recipes_had_it(tmp_path, monkeypatch) -> None:
    """train builds the model it will train (weights, lesion taps) before decoding, to fail at once; that build must
    not move the RNG, or every recorded recipe (model cards' reproduce commands) would train other weights. The RNG
    state when decoding starts is the same with and without the lesion head and the ImageNet weights, as it was."""
    from medimg_demo.learn import train as train_module

    states: list[torch.Tensor] = []

    class Stop(Exception):
        pass

    def capture(*args, **kwargs):
        states.append(torch.get_rng_state())
        raise Stop

    monkeypatch.setattr(train_module, "ManifestDataset", capture)
    common = _toy_run(tmp_path, monkeypatch)
    for over in ({"lesion": False, "pretrained": "none"}, {"lesion": True, "pretrained": "offline"}):
        with pytest.raises(Stop):
            train(TrainConfig(model_id="toy.rng_v0", epochs=1, **{**common, **over}))
    assert len(states) == 2 and torch.equal(states[0], states[1])
