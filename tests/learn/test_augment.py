"""Training augmentation: the source-artefact transforms (blur, resampling, noise, burned-in marks) act on the image
only; reframing moves the body and its mask together, and only where a task's images show a body on a background."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from medimg_demo.errors import OptionError
from medimg_demo.learn.augment import apply_augment
from medimg_demo.learn.config import TrainConfig
from medimg_demo.tasks import AugmentSpec, get_task


def _checker(n: int = 64) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    return (((yy // 2) + (xx // 2)) % 2).float()[None] * 0.6 + 0.2


def _roughness(x: torch.Tensor) -> float:
    return float((x[..., 1:] - x[..., :-1]).abs().mean())


def test_source_artefacts_blur_or_add_noise_and_leave_the_mask_alone() -> None:
    plain = AugmentSpec(degrees=0, translate=0, scale=(1, 1), brightness=0, contrast=0, gamma=0)
    x, mask = _checker(), (_checker() > 0.5).float()
    g = torch.Generator().manual_seed(0)
    base = [_roughness(apply_augment(x, plain, g)[0]) for _ in range(3)]
    assert max(base) - min(base) < 1e-6  # nothing random left on
    blurred = dataclasses.replace(plain, blur=1.5, resample=0.5)
    rough = []
    for _ in range(30):
        out, m = apply_augment(x, blurred, g, mask)
        assert torch.equal(m, mask) and 0 <= float(out.min()) and float(out.max()) <= 1
        rough.append(_roughness(out))
    assert min(rough) < 0.5 * base[0]  # some draws smooth the 2-px checker away
    assert sum(abs(r - base[0]) < 1e-6 for r in rough) >= 5  # and about (2/3)^2 of them leave it alone
    noisy = dataclasses.replace(plain, noise=0.05)
    diffs = [float((apply_augment(x, noisy, g)[0] - x).abs().max()) for _ in range(30)]
    assert max(diffs) > 0.01 and min(diffs) < 1e-5


def test_brain_defines_source_artefacts_for_the_option_and_keeps_its_plain_augmentation() -> None:
    brain = get_task("brain_mri")
    strong = brain.artefact_augment
    assert strong is not None and strong.blur > 0 and strong.resample > 0 and strong.noise > 0
    assert brain.augment.blur == brain.augment.resample == brain.augment.noise == 0  # older recipes reproduce
    lung = get_task("lung_ct")
    assert not lung.augment.hflip and lung.augment.marks == 0  # older recipes reproduce
    assert lung.artefact_augment is not None and lung.artefact_augment.marks > 0 and not lung.artefact_augment.hflip


def test_marks_draw_lines_and_frames_on_the_image_only() -> None:
    plain = AugmentSpec(degrees=0, translate=0, scale=(1, 1), brightness=0, contrast=0, gamma=0)
    x, mask = torch.full((1, 224, 224), 0.5), torch.zeros(1, 224, 224)
    mask[:, 100:120, 100:120] = 1
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(apply_augment(x, plain, g)[0], x, atol=1e-4)
    marked = dataclasses.replace(plain, marks=1.0)
    changed, framed = [], 0
    for _ in range(20):
        out, m = apply_augment(x, marked, g, mask)
        assert torch.equal(m, mask) and 0 <= float(out.min()) and float(out.max()) <= 1
        moved = (out - x).abs() > 0.3
        changed.append(float(moved.float().mean()))
        framed += bool(moved[0, :, :12].any(dim=1).float().mean() > 0.9)  # a frame runs down the left edge
    assert min(changed) > 0 and max(changed) < 0.25  # every draw marks some pixels, none covers the image
    assert 3 <= framed <= 17  # a frame about half of the time


def _body_slice(n: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """A textured elliptic body on black, and a small 'lesion' mask inside it."""
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    body = ((xx - n / 2) / 34) ** 2 + ((yy - n / 2) / 24) ** 2 <= 1
    x = torch.where(body, 0.5 + 0.2 * torch.sin(xx / 3.0), torch.zeros(())).float()[None]
    lesion = (((xx - 40) ** 2 + (yy - 48) ** 2) <= 36).float()[None]
    return x, lesion


def test_reframe_moves_the_body_onto_a_new_margin_and_background_and_the_mask_follows() -> None:
    plain = AugmentSpec(degrees=0, translate=0, scale=(1, 1), brightness=0, contrast=0, gamma=0)
    x, lesion = _body_slice()
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(apply_augment(x, plain, g)[0], x, atol=1e-4)  # off (the default): the frame stays
    spec = dataclasses.replace(plain, reframe=1.0)
    greys, moved = set(), 0
    for _ in range(20):
        out, m = apply_augment(x, spec, g, lesion)
        assert out.shape == x.shape and m is not None and m.shape == lesion.shape
        greys.add(round(float(out[0, 0, 0]), 3))  # a corner is background
        inside = out[m.bool()]
        assert m.sum() > 0 and float(inside.mean()) > 0.3  # the lesion mask still lies on body pixels
        moved += int(not torch.equal(m, lesion))
    assert 0.0 in greys and any(0.05 <= v <= 0.3 for v in greys)  # black half of the time, else grey 0.05-0.3
    assert moved >= 15  # the body's box and the margins change the geometry
    never = dataclasses.replace(plain, reframe=1e-9)
    assert torch.allclose(apply_augment(x, never, g)[0], x, atol=1e-4)


def test_reframe_leaves_an_image_without_a_body_alone() -> None:
    spec = AugmentSpec(degrees=0, translate=0, scale=(1, 1), brightness=0, contrast=0, gamma=0, reframe=1.0)
    white = torch.full((1, 64, 64), 0.9)
    assert torch.allclose(apply_augment(white, spec, torch.Generator().manual_seed(0))[0], white, atol=1e-4)


def test_reframe_is_refused_where_the_images_show_no_body_on_a_background() -> None:
    assert not get_task("breast_us").framed_body and get_task("lung_ct").framed_body and get_task("brain_mri").framed_body
    with pytest.raises(OptionError, match="--reframe: Breast ultrasound images show no body"):
        TrainConfig(task="breast_us", reframe=0.5).check_options()
    TrainConfig(task="lung_ct", reframe=0.5).check_options()
