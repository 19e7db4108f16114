"""Study -> model input tensor, driven by the model's :class:`InputConfig` alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..imaging.study import Study
from .config import InputConfig

if TYPE_CHECKING:  # torch is imported where a tensor is made: the ONNX batch path runs without it
    import torch

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC, "nearest": Image.Resampling.NEAREST}


def resize_gray(pixels: np.ndarray, size: tuple[int, int], interpolation: str = "bilinear") -> np.ndarray:
    """Resize a 2-D float image in [0, 1] to ``size`` = (height, width), keeping float precision."""
    h, w = size
    img = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32), mode="F")
    out = img.resize((w, h), resample=_RESAMPLE.get(interpolation, Image.Resampling.BILINEAR))
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def normalize(gray: torch.Tensor, cfg: InputConfig) -> torch.Tensor:
    """(N, 1, H, W) or (1, H, W) grey in [0, 1] -> 3-channel normalised tensor."""
    import torch

    squeeze = gray.dim() == 3
    if squeeze:
        gray = gray.unsqueeze(0)
    x = gray.expand(-1, 3, -1, -1)
    mean = torch.tensor(cfg.mean, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, dtype=x.dtype).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x[0] if squeeze else x


def to_tensor(pixels: np.ndarray, cfg: InputConfig) -> torch.Tensor:
    """2-D image in [0, 1] -> (1, 3, H, W) float tensor the model expects."""
    import torch

    small = resize_gray(pixels, cfg.size, cfg.interpolation)
    return normalize(torch.from_numpy(small)[None, None], cfg).contiguous()


def to_batch(images: list[np.ndarray], cfg: InputConfig) -> np.ndarray:
    """Many 2-D images in [0, 1] -> one (N, 3, H, W) float32 array, equal to stacking :func:`to_tensor` of each
    (the same float32 arithmetic), without a torch call per image: the batch path's preprocessing."""
    h, w = cfg.size
    gray = np.empty((len(images), 1, h, w), dtype=np.float32)
    for i, pixels in enumerate(images):
        gray[i, 0] = resize_gray(pixels, cfg.size, cfg.interpolation)
    mean = np.asarray(cfg.mean, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(cfg.std, dtype=np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((gray - mean) / std, dtype=np.float32)


def model_pixels(study: Study, cfg: InputConfig) -> np.ndarray:
    """The grey image the model sees: the config's window for this DICOM modality, else the file's default view.

    Independent of any window the user picks for display.
    """
    window = cfg.dicom_windows.get(study.modality or "") if study.values is not None else None
    if window is None:
        return study.pixels
    return study.display(*window)
