"""TumorNet: a timm backbone (``num_classes=0``) with one linear head per output, split like timm into
``forward_features`` (the feature map) and ``forward_head`` (pooling and heads)."""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .lesion_head import DEFAULT_CHANNELS, LesionHead, tap_channels
from .weights import create_backbone, load_checkpoint


class TumorNet(nn.Module):
    """Backbone features -> {head name: logits}.

    ``features`` is an identity layer on the backbone's last feature map: Grad-CAM hooks it whatever the
    architecture (for EfficientNet it carries exactly the output of ``backbone.bn2``).
    """

    def __init__(
        self,
        arch: str,
        heads: dict[str, list[str]],
        pretrained: str = "none",
        drop_rate: float = 0.0,
        lesion_taps: tuple[int, ...] | None = None,
        lesion_channels: int = DEFAULT_CHANNELS,
    ) -> None:
        super().__init__()
        self.arch = arch
        self.backbone = create_backbone(arch, pretrained)
        n = int(getattr(self.backbone, "num_features"))
        self.features = nn.Identity()
        self.dropout = nn.Dropout(drop_rate)
        self.head_names = list(heads)
        # ModuleDict keys are prefixed: a bare "type" would clash with nn.Module.type().
        self.heads = nn.ModuleDict({f"head_{name}": nn.Linear(n, len(labels)) for name, labels in heads.items()})
        #: Optional lesion head (see ``lesion_head``) on the blocks listed in ``lesion_taps``.
        self.lesion_taps = tuple(lesion_taps or ())
        self.lesion = (LesionHead(tap_channels(self.backbone, self.lesion_taps), lesion_channels)
                       if self.lesion_taps else None)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> the backbone's last feature map (N, C, h, w)."""
        return self.features(self.backbone.forward_features(x))

    def features_and_lesion(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One forward: the last feature map (as :meth:`forward_features`) and the lesion logits (N, 1, h, w) at the
        finest tapped stride, or None for a model without a lesion head."""
        if self.lesion is None:
            return self.forward_features(x), None
        b = self.backbone
        x = b.bn1(b.conv_stem(x))
        taps = []
        for i, block in enumerate(b.blocks):
            x = block(x)
            if i in self.lesion_taps:
                taps.append(x)
        features = self.features(b.bn2(b.conv_head(x)))
        if self.training:
            return features, self.lesion(taps)
        # Inference: nothing differentiates the lesion map (Grad-CAM runs on the class), so skip its autograd graph.
        with torch.no_grad():
            return features, self.lesion([t.detach() for t in taps])

    def pooled(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Feature map -> pooled features (N, C), before any head."""
        return self.backbone.forward_head(feature_map, pre_logits=True)

    def head_logits(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pooled features -> {head name: logits}."""
        f = self.dropout(pooled)
        return {name: self.heads[f"head_{name}"](f) for name in self.head_names}

    def forward_head(self, feature_map: torch.Tensor) -> dict[str, torch.Tensor]:
        """Feature map -> {head name: logits}."""
        return self.head_logits(self.pooled(feature_map))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(x))

    def layer(self, dotted: str) -> nn.Module:
        """Sub-module by dotted path relative to this model, e.g. ``features`` or ``backbone.bn2``."""
        module: nn.Module = self
        for part in dotted.split("."):
            module = module[int(part)] if part.isdigit() else getattr(module, part)  # type: ignore[index]
        return module


def load_model(cfg: ModelConfig) -> TumorNet:
    """Build the architecture from config and load its pinned weights, in eval mode, the lesion head fused for
    inference (see :meth:`LesionHead.fuse_for_inference`)."""
    lesion = cfg.lesion
    model = TumorNet(cfg.arch, cfg.heads, pretrained="none", lesion_taps=lesion.taps if lesion else None,
                     lesion_channels=lesion.channels if lesion else DEFAULT_CHANNELS)
    load_checkpoint(model, cfg.weights_path, cfg.weights_sha256)
    model.eval()
    if model.lesion is not None:
        model.lesion.fuse_for_inference()
    return model
