"""Grad-CAM with Captum's LayerGradCam, on one head and one class, as a 2-D map in [0, 1].

The forward pass that Captum runs is also the prediction: the forward function keeps every head's
logits, so predicting and explaining cost one forward and one backward to the target layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from captum._utils.gradient import compute_layer_gradients_and_eval
from captum.attr import LayerAttribution, LayerGradCam

from ..models.calibrate import calibrated_softmax
from ..models.calibration import Calibration
from ..models.network import TumorNet


@dataclass(frozen=True)
class Explanation:
    logits: dict[str, torch.Tensor]  # detached, shape (1, n_classes) per head
    target: int  # class index the map explains
    cam: np.ndarray  # (H, W) float32 in [0, 1], at the requested output size
    pooled: torch.Tensor | None = None  # detached pooled features (1, C) of the same forward (for the gate)
    lesion: np.ndarray | None = None  # the lesion head's probabilities (h, w) of the same forward, if it has one


def _normalise(cam: torch.Tensor) -> np.ndarray:
    arr = cam.detach().float().cpu().numpy()
    if arr.min() < 0:  # signed map (relu=False): keep the sign, scale by the largest magnitude
        top = float(np.abs(arr).max())
        return (arr / top).astype(np.float32) if top > 0 else np.zeros_like(arr, dtype=np.float32)
    hi = float(arr.max()) if arr.size else 0.0
    if hi <= 0 or not np.isfinite(hi):
        return np.zeros_like(arr, dtype=np.float32)
    return np.clip(arr / hi, 0.0, 1.0).astype(np.float32)


def gradcam(
    model: TumorNet,
    x: torch.Tensor,
    head: str,
    layer: str,
    out_size: tuple[int, int],
    target: int | None = None,
    relu: bool = True,
    calibration: Calibration | None = None,
) -> Explanation:
    """Grad-CAM of ``head``'s class ``target`` (default: the predicted class) for one input ``x`` (1, 3, h, w).

    The predicted class is the top class of the calibrated probabilities where ``calibration`` is given (the class
    the app shows: a per-class bias can move it away from the raw logits' top class), else of the raw logits.

    ReLU on the weighted sum (as in Selvaraju et al.), bilinear upsampling to ``out_size`` = (H, W),
    then scaled so the maximum is 1. An all-zero map means no positive evidence at this layer.
    ``relu=False`` keeps the signed map (scaled to [-1, 1]), for comparisons such as the randomisation check.
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"gradcam expects one image of shape (1, 3, h, w), got {tuple(x.shape)}")
    cache: dict[str, dict[str, torch.Tensor]] = {}
    chosen: dict[str, int] = {}

    def forward(inp: torch.Tensor) -> torch.Tensor:
        features, lesion = model.features_and_lesion(inp)
        pooled = model.pooled(features)
        out = model.head_logits(pooled)
        cache["logits"] = out
        cache["pooled"] = {"pooled": pooled}
        if lesion is not None:
            cache["lesion"] = {"lesion": lesion}
        logits = out[head]
        if target is not None:
            idx = int(target)
        else:
            scores = logits.detach() if calibration is None else calibrated_softmax(logits.detach(), calibration)
            idx = int(scores.argmax(dim=1)[0])
        chosen["target"] = idx
        return logits[:, idx]  # one scalar per example: the score being explained

    # "a*b": stages combined - the product of each layer's normalised map (a coarse, class-specific stage sharpened
    # by a finer one). One layer: Captum's LayerGradCam. Several: Captum's layer-gradient routine (the one
    # LayerGradCam runs) on all of them at once, so one forward and one backward serve every layer, then the same
    # Grad-CAM weighting (spatially averaged gradients times activations, summed over channels).
    modules = [model.layer(name.strip()) for name in layer.split("*")]
    with torch.enable_grad():
        if len(modules) == 1:
            attrs = [LayerGradCam(forward, modules[0]).attribute(x, relu_attributions=relu)]
        else:
            grads, acts = compute_layer_gradients_and_eval(forward, modules, x)
            attrs = [_grad_cam(g[0], a[0], relu) for g, a in zip(grads, acts)]
    maps = [_normalise(LayerAttribution.interpolate(a.detach(), out_size, interpolate_mode="bilinear")[0, 0])
            for a in attrs]
    cam = maps[0]
    for extra in maps[1:]:
        cam = cam * extra if relu else cam * np.abs(extra)
    logits = {k: v.detach() for k, v in cache["logits"].items()}
    pooled = cache["pooled"]["pooled"].detach()
    lesion = cache.get("lesion", {}).get("lesion")
    return Explanation(logits=logits, target=chosen["target"], cam=_normalise(torch.from_numpy(cam)), pooled=pooled,
                       lesion=None if lesion is None else lesion_probs(lesion))


def _grad_cam(grad: torch.Tensor, act: torch.Tensor, relu: bool) -> torch.Tensor:
    """LayerGradCam's weighting of one layer's gradient and activation (N, C, h, w) -> (N, 1, h, w)."""
    cam = (grad.mean(dim=(2, 3), keepdim=True) * act).sum(dim=1, keepdim=True)
    return torch.relu(cam) if relu else cam


def lesion_probs(logits: torch.Tensor) -> np.ndarray:
    """Lesion head logits (1, 1, h, w) -> probabilities (h, w) float32."""
    return torch.sigmoid(logits.detach().float())[0, 0].cpu().numpy()
