"""Knowledge distillation: the loss follows the teacher on uncovered images only; a teacher must fit the run; the
dataset marks which images had their lesion covered; several teachers are one (their mean probabilities); a run that
holds a calibration fold out takes only teachers that held out the same fold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medimg_demo.learn.losses import distill_loss
from medimg_demo.models.config import InputConfig


def test_distill_loss_is_zero_when_student_matches_and_ignores_covered_images() -> None:
    teacher = torch.tensor([[3.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    keep = torch.tensor([True, True])
    assert float(distill_loss(teacher.clone(), teacher, keep)) == pytest.approx(0.0, abs=1e-6)
    wrong = torch.tensor([[-1.0, 0.0, 3.0], [0.0, 2.0, 0.0]])
    assert float(distill_loss(wrong, teacher, keep)) > 0.5
    # the first image's lesion was covered (its label is now "normal"): the teacher has no say there
    assert float(distill_loss(wrong, teacher, torch.tensor([False, True]))) == pytest.approx(0.0, abs=1e-6)
    student = wrong.clone().requires_grad_(True)
    distill_loss(student, teacher, keep).backward()
    assert student.grad is not None and float(student.grad[0].abs().sum()) > 0
    assert float(distill_loss(wrong, teacher, torch.tensor([False, False]))) == 0.0


def test_teacher_must_share_labels_and_input(tiny_registry, monkeypatch) -> None:
    from medimg_demo.learn.start import load_teacher
    from medimg_demo.models.registry import get_model, list_models

    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(tiny_registry))
    cfg = next(m for m in list_models() if m.task == "lung_ct")
    teacher = load_teacher(cfg.id, cfg.type_labels, cfg.input)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with pytest.raises(ValueError, match="differ"):
        load_teacher(cfg.id, ["a", "b"], cfg.input)
    other = InputConfig(size=(cfg.input.size[0] + 16, cfg.input.size[1] + 16), mean=cfg.input.mean, std=cfg.input.std)
    with pytest.raises(ValueError, match="differ"):
        load_teacher(get_model(cfg.id).id, cfg.type_labels, other)


def test_dataset_marks_covered_images(tmp_path) -> None:
    from medimg_demo.learn.dataset import ManifestDataset

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rows = []
    for i in range(6):
        arr = np.full((40, 40), 40, np.uint8)
        arr[10:20, 10:20] = 220
        mask = np.zeros((40, 40), np.uint8)
        mask[10:20, 10:20] = 255
        Image.fromarray(arr).save(tmp_path / f"images/{i}.png")
        Image.fromarray(mask).save(tmp_path / f"masks/{i}.png")
        rows.append({"image": f"images/{i}.png", "label": "lesion", "split": "train", "mask": f"masks/{i}.png"})
    frame = pd.DataFrame(rows)
    cfg = InputConfig(size=(40, 40), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    ds = ManifestDataset(tmp_path, frame, {"type": ["lesion", "normal"]}, cfg, lesions=True, erase=(1.0, 0.0),
                         normal_label="normal")
    for i in range(len(ds)):
        _, t = ds[i]
        assert bool(t["covered"]) and int(t["type"]) == 1 and float(t["mask"].sum()) == 0
    plain = ManifestDataset(tmp_path, frame, {"type": ["lesion", "normal"]}, cfg, lesions=True)
    assert "covered" not in plain[0][1]


def test_a_teacher_with_offsets_is_distilled_in_its_calibrated_form(tiny_registry, monkeypatch) -> None:
    """A BCTS teacher's raw logits carry the prior its offsets undo: the student must follow what the app shows."""
    import dataclasses

    from medimg_demo.learn import start
    from medimg_demo.models import registry
    from medimg_demo.models.registry import get_model, list_models

    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(tiny_registry))
    cfg = next(m for m in list_models() if m.task == "lung_ct")
    x = torch.randn(2, 3, *cfg.input.size)
    raw = start.load_teacher(cfg.id, cfg.type_labels, cfg.input)(x)["type"]
    bias = (3.0, 0.0, -2.0, 0.5)
    offset = dataclasses.replace(get_model(cfg.id), temperature={"type": 0.5}, bias={"type": bias})
    monkeypatch.setattr(registry, "get_model", lambda model_id: offset)
    teacher = start.load_teacher(cfg.id, cfg.type_labels, cfg.input)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    out = teacher(x)
    assert torch.allclose(out["type"], raw / 0.5 + torch.tensor(bias), atol=1e-4)
    assert set(out) >= {"type", "stage"}  # the other heads pass through


def test_several_teachers_are_one_whose_probabilities_are_their_mean() -> None:
    from medimg_demo.learn.config import teacher_ids
    from medimg_demo.learn.start import _EnsembleTeacher

    class Fixed(torch.nn.Module):
        def __init__(self, z: list[list[float]], stage: float) -> None:
            super().__init__()
            self.z, self.stage = torch.tensor(z), stage

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"type": self.z, "stage": torch.full((len(self.z), 2), self.stage)}

    a, b = [[4.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[0.0, 4.0, 0.0], [0.0, 1.0, 3.0]]
    out = _EnsembleTeacher([Fixed(a, 1.0), Fixed(b, 2.0)])(torch.zeros(2, 3, 8, 8))
    mean = (torch.softmax(torch.tensor(a), 1) + torch.softmax(torch.tensor(b), 1)) / 2
    assert torch.allclose(torch.softmax(out["type"], 1), mean, atol=1e-6)
    # not the softmax of mean logits: the two disagree where the members do
    assert not torch.allclose(torch.softmax(out["type"], 1), torch.softmax((torch.tensor(a) + torch.tensor(b)) / 2, 1), atol=1e-2)
    assert float(out["stage"][0, 0]) == 1.0  # the other heads are the first teacher's
    assert teacher_ids(" m1, m2 ,m3 ") == ["m1", "m2", "m3"]
    with pytest.raises(ValueError, match="each once"):
        teacher_ids("m1,m2,m1")


def _teacher_trained_with(tiny_registry, out, training: dict, model_id: str = "lung_ct.tiny_v0",  # noqa: ANN001
                          calibration: dict | None = None) -> str:
    import json
    import shutil

    shutil.copytree(tiny_registry / "lung_ct.tiny_v0", out / model_id, dirs_exist_ok=True)
    raw = json.loads((out / model_id / "config.json").read_text())
    raw["id"] = model_id
    raw["training"] = {"task": "lung_ct", "data": "lung_ct", "seed": 2, **training}
    if calibration is not None:
        raw["calibration"] = calibration
    (out / model_id / "config.json").write_text(json.dumps(raw))
    return model_id


HELD = pd.DataFrame({"image": ["images/b.png", "images/a.png"]})
BLIND = {"calibration_folds": 10, "calibration_fold": 1, "calibration_seed": 0}


def _fingerprint(images: list[str]) -> str:
    from medimg_demo.learn.holdout import held_out_fingerprint

    return held_out_fingerprint(pd.DataFrame({"image": images}))


@pytest.mark.parametrize("training,calibration,accepted", [
    (BLIND, None, True),
    ({"calibration_folds": 10, "calibration_fold": 1, "seed": 0}, None, True),  # a record from before the fold split seed
    ({}, None, False),  # trained on all of train, the fold included
    ({**BLIND, "calibration_fold": 2}, None, False),
    ({**BLIND, "calibration_folds": 5}, None, False),
    ({"calibration_folds": 10, "calibration_fold": 1}, None, False),  # an old record: its folds came from seed 2
    ({**BLIND, "data": "other"}, None, False),  # the same task on another data folder (a copy?): numbers do not say
    # a record that names its held-out images: they decide, whatever the fold numbers say
    ({**BLIND, "calibration_fold": 7}, {"held_out_sha256": _fingerprint(["images/a.png", "images/b.png"])}, True),
    (BLIND, {"held_out_sha256": _fingerprint(["images/a.png", "images/c.png"])}, False),
])
def test_a_run_holding_a_fold_out_takes_only_teachers_blind_to_it(tiny_registry, tmp_path, training: dict,
                                                                    calibration: dict | None, accepted: bool) -> None:
    from medimg_demo.learn.config import TrainConfig
    from medimg_demo.learn.lineage import check_sources_blind

    model_id = _teacher_trained_with(tiny_registry, tmp_path, training, calibration=calibration)
    run = TrainConfig(task="lung_ct", out_dir=str(tmp_path), seed=5, calibration_folds=10, calibration_fold=1,
                      distill_from=model_id, distill_weight=1.0)
    if accepted:
        check_sources_blind(run, "lung_ct", HELD)
    else:
        with pytest.raises(ValueError, match="must not have trained on the images the temperature is fitted on"):
            check_sources_blind(run, "lung_ct", HELD)


def test_every_member_of_an_ensemble_teacher_is_checked_and_loaded(tiny_registry, tmp_path) -> None:
    from medimg_demo.learn.config import TrainConfig
    from medimg_demo.learn.lineage import check_sources_blind
    from medimg_demo.learn.start import _EnsembleTeacher, load_teacher
    from medimg_demo.models.registry import get_model

    first = _teacher_trained_with(tiny_registry, tmp_path, BLIND, "lung_ct.a_v1")
    second = _teacher_trained_with(tiny_registry, tmp_path, {}, "lung_ct.b_v1")  # saw the fold
    run = TrainConfig(task="lung_ct", out_dir=str(tmp_path), calibration_folds=10, calibration_fold=1,
                      distill_from=f"{first}, {second}", distill_weight=1.0)
    with pytest.raises(ValueError, match=second):
        check_sources_blind(run, "lung_ct", HELD)
    cfg = get_model(first, tmp_path)
    teacher = load_teacher(f"{first},{second}", cfg.type_labels, cfg.input, tmp_path)
    assert isinstance(teacher, _EnsembleTeacher) and len(teacher.members) == 2 and not teacher.training
    x = torch.randn(2, 3, *cfg.input.size)
    assert torch.allclose(teacher(x)["type"].exp().sum(1), torch.ones(2), atol=1e-5)  # log-probabilities
    with pytest.raises(ValueError, match="each once"):
        TrainConfig(task="lung_ct", distill_from=" , ", distill_weight=1.0).check_options()


def test_a_card_names_every_teacher() -> None:
    from medimg_demo.eval.card import _teachers

    assert _teachers("m_v1") == "`m_v1`"
    assert _teachers("a_v1, b_v1 ,c_v1") == "the mean probabilities of `a_v1`, `b_v1` and `c_v1`"


SAME = {"held_out_sha256": _fingerprint(["images/a.png", "images/b.png"])}
OTHER = {"held_out_sha256": _fingerprint(["images/a.png", "images/c.png"])}


@pytest.mark.parametrize("link,root,root_calibration,refused", [
    ("init_from", BLIND, SAME, ""),  # the whole chain held the same images out
    ("init_from", BLIND, OTHER, "lung_ct.root_v1, which it was built from, held out other images"),
    ("init_from", {}, None, "lung_ct.root_v1, which it was built from, trained on all of the train split of 'lung_ct'"),
    # a --lesion-only model keeps its start model's calibration record, fingerprint included, but held nothing out
    ("init_from", {"lesion_only": True}, SAME, "lung_ct.root_v1, which it was built from, trained on all of"),
    ("distill_from", {}, None, "lung_ct.root_v1, which it was built from, trained on all of"),
    ("backbone_from", {}, None, "lung_ct.root_v1, which it was built from, trained on all of"),
    # the same images under another task name are the same images
    ("backbone_from", {"task": "alias"}, None, "lung_ct.root_v1, which it was built from, trained on all of"),
    ("backbone_from", {"task": "brain_mri", "data": "brain_mri"}, None, ""),  # another data set: never saw these
    ("init_from", None, None, "lung_ct.root_v1, which lung_ct.mid_v1 was built from, is in neither --out nor"),
])
def test_every_model_a_chain_was_built_from_is_checked(tiny_registry, tmp_path, link: str, root: dict | None,
                                                       root_calibration: dict | None, refused: str) -> None:
    """--calibration-folds with --init-from / --distill-from / --backbone-from: the chain re-run on one held-out fold
    (start model, teachers, student) is out-of-sample only if every model it was built from, however far back, held
    the same images out (or trained on another data set); each step's own check is not trusted."""
    from medimg_demo.learn.config import TrainConfig
    from medimg_demo.learn.lineage import check_sources_blind
    from medimg_demo.learn.start import check_sources

    if root is not None:
        _teacher_trained_with(tiny_registry, tmp_path, root, "lung_ct.root_v1", calibration=root_calibration)
    mid = _teacher_trained_with(tiny_registry, tmp_path, {**BLIND, link: "lung_ct.root_v1"}, "lung_ct.mid_v1",
                                calibration=SAME)
    for option in ("init_from", "distill_from", "backbone_from"):
        run = TrainConfig(task="lung_ct", out_dir=str(tmp_path), calibration_folds=10, calibration_fold=1,
                          **{option: mid}, **({"distill_weight": 1.0} if option == "distill_from" else {}))
        run.check_options()
        if option != "backbone_from":
            check_sources(run)  # it held a fold out: which images is checked once the fold is drawn
        if not refused:
            check_sources_blind(run, "lung_ct", HELD)
        else:
            flag = "--" + option.replace("_", "-")
            with pytest.raises(ValueError, match=f"{flag} {mid}: {refused}"):
                check_sources_blind(run, "lung_ct", HELD)


def test_a_backbone_trained_on_the_same_images_under_another_task_name_is_refused(tiny_registry, tmp_path) -> None:
    from medimg_demo.learn.config import TrainConfig
    from medimg_demo.learn.lineage import check_sources_blind

    alias = _teacher_trained_with(tiny_registry, tmp_path, {"task": "alias"}, "alias.all_v1")
    run = TrainConfig(task="lung_ct", out_dir=str(tmp_path), calibration_folds=10, calibration_fold=1,
                      backbone_from=alias)
    with pytest.raises(ValueError, match="--backbone-from alias.all_v1: it trained on all of the train split of 'lung_ct'"):
        check_sources_blind(run, "lung_ct", HELD)


def test_a_start_model_that_held_no_fold_out_is_refused_before_the_fold_is_drawn(tiny_registry, tmp_path) -> None:
    from medimg_demo.learn.config import TrainConfig
    from medimg_demo.learn.start import check_sources

    start = _teacher_trained_with(tiny_registry, tmp_path, {}, "lung_ct.all_v1")
    for option in ("init_from", "distill_from"):
        run = TrainConfig(task="lung_ct", out_dir=str(tmp_path), calibration_folds=10, calibration_fold=1,
                          **{option: start}, **({"distill_weight": 1.0} if option == "distill_from" else {}))
        with pytest.raises(ValueError, match=f"--{option.replace('_', '-')} {start}: it trained on all of train"):
            check_sources(run)
    check_sources(TrainConfig(task="lung_ct", out_dir=str(tmp_path), init_from=start))  # no fold held out: fine
