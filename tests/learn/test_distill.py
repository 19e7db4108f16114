"""Knowledge distillation: the loss follows the teacher on uncovered images only; a teacher must fit the run; the
dataset marks which images had their lesion covered."""

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
