"""Training augmentation from a task's :class:`~medimg_demo.tasks.AugmentSpec` (flip, affine, gamma, contrast, and
against source artefacts blur, resampling, noise, burned-in marks and the framing of the body)."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..tasks import AugmentSpec


def apply_augment(x: torch.Tensor, spec: AugmentSpec, g: torch.Generator,
                  mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """x: (1, H, W) grey in [0, 1] -> an augmented copy, drawn from ``g`` (reproducible per seed); a lesion ``mask``
    (1, H, W) in {0, 1} gets the same flip and affine transform."""
    import torchvision.transforms.v2.functional as TF

    def u(a: float, b: float) -> float:
        return float(a + (b - a) * torch.rand((), generator=g))

    if spec.reframe > 0:
        x, mask = _reframe(x, mask, spec.reframe, u)
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
    x = _source_artefacts(x.clamp(0, 1), spec, u, g)
    return (_marks(x, spec, u) if spec.marks > 0 else x), mask


def _source_artefacts(x: torch.Tensor, spec: AugmentSpec, u, g: torch.Generator) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Blur, resampling and noise, each with probability 1/3 (only those the spec turns on draw random numbers)."""
    import torch.nn.functional as F
    import torchvision.transforms.v2.functional as TF

    if spec.blur > 0 and u(0, 1) < 1 / 3:
        sigma = u(0.3, spec.blur)
        k = 2 * math.ceil(3 * sigma) + 1
        x = TF.gaussian_blur(x, kernel_size=[k, k], sigma=[sigma, sigma])
    if spec.resample > 0 and u(0, 1) < 1 / 3:
        h, w = x.shape[-2:]
        f = u(spec.resample, 1.0)
        small = F.interpolate(x[None], size=(max(8, round(h * f)), max(8, round(w * f))), mode="bilinear",
                              antialias=True, align_corners=False)
        x = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0]
    if spec.noise > 0 and u(0, 1) < 1 / 3:
        x = x + torch.randn(x.shape, generator=g) * u(0.0, spec.noise)
    return x.clamp(0, 1)


def _marks(x: torch.Tensor, spec: AugmentSpec, u) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Burned-in marks as teaching-file figures carry them: with probability ``spec.marks`` 1-3 straight lines, half of
    them arrows, in near-white or near-black; with half that probability a frame a few pixels in from the edge. The
    lesion mask is left alone (a mark is not anatomy)."""
    from PIL import Image, ImageDraw

    h, w = x.shape[-2:]
    px = max(1.0, min(h, w) / 224)  # sizes are set for 224 px inputs
    shapes: list[tuple[Image.Image, float]] = []
    if u(0, 1) < spec.marks:
        for _ in range(1 + int(u(0, 3))):
            layer = Image.new("L", (w, h), 0)
            draw = ImageDraw.Draw(layer)
            x0, y0 = u(0, w), u(0, h)
            length, angle = u(15, 90) * px, u(0, 2 * math.pi)
            x1, y1 = x0 + length * math.cos(angle), y0 + length * math.sin(angle)
            width = max(1, round(u(1, 3.5) * px))
            draw.line([(x0, y0), (x1, y1)], fill=255, width=width)
            if u(0, 1) < 0.5:  # an arrowhead at the end
                head = u(5, 12) * px
                for turn in (math.pi - 0.5, math.pi + 0.5):
                    draw.line([(x1, y1), (x1 + head * math.cos(angle + turn), y1 + head * math.sin(angle + turn))],
                              fill=255, width=width)
            shapes.append((layer, u(0.85, 1.0) if u(0, 1) < 0.7 else u(0.0, 0.1)))
    if u(0, 1) < spec.marks / 2:
        layer = Image.new("L", (w, h), 0)
        inset, width = u(0, 8) * px, max(1, round(u(2, 6) * px))
        ImageDraw.Draw(layer).rectangle([inset, inset, w - 1 - inset, h - 1 - inset], outline=255, width=width)
        shapes.append((layer, u(0.85, 1.0)))
    for layer, value in shapes:
        m = torch.frombuffer(bytearray(layer.tobytes()), dtype=torch.uint8).reshape(1, h, w).float() / 255
        x = x * (1 - m) + value * m
    return x


def _reframe(x: torch.Tensor, mask: torch.Tensor | None, p: float, u) -> tuple[torch.Tensor, torch.Tensor | None]:  # type: ignore[no-untyped-def]
    """With probability ``p``: the body cropped to its box, put back with a margin of 0-15% of the side on each side
    (stretched to fill the rest), on a background of grey 0 (half of the time) or 0.05-0.3; the body's pixels are
    not changed. A lesion ``mask`` follows the same geometry. Images whose body cannot be told are left alone."""
    import torch.nn.functional as F

    from ..imaging.body import body_mask

    if u(0, 1) >= p:
        return x, mask
    body = body_mask(x[0].numpy().astype(np.float32))
    if body is None:
        return x, mask
    h, w = x.shape[-2:]
    ys, xs = np.where(body)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    top, bottom = round(u(0, 0.15) * h), round(u(0, 0.15) * h)
    left, right = round(u(0, 0.15) * w), round(u(0, 0.15) * w)
    inner = (h - top - bottom, w - left - right)
    grey = 0.0 if u(0, 1) < 0.5 else u(0.05, 0.3)

    def place(t: torch.Tensor) -> torch.Tensor:
        """The body's box stretched into the inner frame, zeros around it."""
        out = torch.zeros((h, w))
        out[top:top + inner[0], left:left + inner[1]] = F.interpolate(t[None, None], size=inner, mode="bilinear",
                                                                      align_corners=False)[0, 0]
        return out

    inside = place(torch.from_numpy(body[y0:y1, x0:x1].astype(np.float32)))
    content = place(torch.from_numpy(np.where(body, x[0].numpy(), 0.0)[y0:y1, x0:x1].astype(np.float32)))
    out = (content * inside + grey * (1 - inside)).clamp(0, 1)[None].to(x.dtype)
    if mask is not None:
        mask = (place(mask[0, y0:y1, x0:x1].float()) > 0.5).float()[None]
    return out, mask
