"""Training augmentation from a task's :class:`~medimg_demo.tasks.AugmentSpec` (flip, affine, gamma, contrast)."""

from __future__ import annotations

import math

import torch

from ..tasks import AugmentSpec


def apply_augment(x: torch.Tensor, spec: AugmentSpec, g: torch.Generator,
                  mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """x: (1, H, W) grey in [0, 1] -> an augmented copy, drawn from ``g`` (reproducible per seed); a lesion ``mask``
    (1, H, W) in {0, 1} gets the same flip and affine transform."""
    import torchvision.transforms.v2.functional as TF

    def u(a: float, b: float) -> float:
        return float(a + (b - a) * torch.rand((), generator=g))

    if spec.hflip and u(0, 1) < 0.5:
        x = torch.flip(x, dims=[-1])
        mask = None if mask is None else torch.flip(mask, dims=[-1])
    h, w = x.shape[-2:]
    params = dict(
        angle=u(-spec.degrees, spec.degrees),
        translate=[u(-spec.translate, spec.translate) * w, u(-spec.translate, spec.translate) * h],
        scale=u(*spec.scale),
        shear=[0.0, 0.0],
        interpolation=TF.InterpolationMode.BILINEAR,
    )
    x = TF.affine(x, **params)  # type: ignore[arg-type]
    if mask is not None:
        mask = (TF.affine(mask, **params) > 0.5).float()  # type: ignore[arg-type]
    gamma = math.exp(u(-spec.gamma, spec.gamma))
    x = x.clamp(0, 1) ** gamma
    x = (x - 0.5) * (1 + u(-spec.contrast, spec.contrast)) + 0.5 + u(-spec.brightness, spec.brightness)
    return x.clamp(0, 1), mask
