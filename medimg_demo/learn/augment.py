"""Training augmentation from a task's :class:`~medimg_demo.tasks.AugmentSpec` (flip, affine, gamma, contrast)."""

from __future__ import annotations

import math

import torch

from ..tasks import AugmentSpec


def apply_augment(x: torch.Tensor, spec: AugmentSpec, g: torch.Generator) -> torch.Tensor:
    """x: (1, H, W) grey in [0, 1] -> an augmented copy, drawn from ``g`` (reproducible per seed)."""
    import torchvision.transforms.v2.functional as TF

    def u(a: float, b: float) -> float:
        return float(a + (b - a) * torch.rand((), generator=g))

    if spec.hflip and u(0, 1) < 0.5:
        x = torch.flip(x, dims=[-1])
    h, w = x.shape[-2:]
    x = TF.affine(
        x,
        angle=u(-spec.degrees, spec.degrees),
        translate=[u(-spec.translate, spec.translate) * w, u(-spec.translate, spec.translate) * h],
        scale=u(*spec.scale),
        shear=[0.0, 0.0],
        interpolation=TF.InterpolationMode.BILINEAR,
    )
    gamma = math.exp(u(-spec.gamma, spec.gamma))
    x = x.clamp(0, 1) ** gamma
    x = (x - 0.5) * (1 + u(-spec.contrast, spec.contrast)) + 0.5 + u(-spec.brightness, spec.brightness)
    return x.clamp(0, 1)
