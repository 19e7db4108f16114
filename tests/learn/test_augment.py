"""Training augmentation: the source-artefact transforms (blur, resampling, noise, burned-in marks) act on the image
only."""

from __future__ import annotations

import dataclasses

import torch

from medimg_demo.learn.augment import apply_augment
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
