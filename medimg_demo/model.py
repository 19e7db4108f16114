"""TumorNet: a timm backbone (num_classes=0) with one linear head per task output."""

from __future__ import annotations

import torch
from torch import nn

from .registry import ModelConfig
from .weights import create_backbone, load_checkpoint


class TumorNet(nn.Module):
    """Backbone features -> {head name: logits}."""

    def __init__(self, arch: str, heads: dict[str, list[str]], pretrained: str = "none", drop_rate: float = 0.0) -> None:
        super().__init__()
        self.arch = arch
        self.backbone = create_backbone(arch, pretrained)
        n = int(getattr(self.backbone, "num_features"))
        self.dropout = nn.Dropout(drop_rate)
        self.head_names = list(heads)
        # ModuleDict keys are prefixed: a bare "type" would clash with nn.Module.type().
        self.heads = nn.ModuleDict({f"head_{name}": nn.Linear(n, len(labels)) for name, labels in heads.items()})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.dropout(self.backbone(x))
        return {name: self.heads[f"head_{name}"](f) for name in self.head_names}

    def layer(self, dotted: str) -> nn.Module:
        """Sub-module by dotted path relative to this model, e.g. ``backbone.bn2``."""
        module: nn.Module = self
        for part in dotted.split("."):
            module = module[int(part)] if part.isdigit() else getattr(module, part)  # type: ignore[index]
        return module


def load_model(cfg: ModelConfig) -> TumorNet:
    """Build the architecture from config and load its pinned weights, in eval mode."""
    model = TumorNet(cfg.arch, cfg.heads, pretrained="none")
    load_checkpoint(model, cfg.weights_path, cfg.weights_sha256)
    model.eval()
    return model
