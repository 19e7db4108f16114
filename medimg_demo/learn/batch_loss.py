"""One training batch's loss: the heads' cross-entropy (or focal loss, mixed with ``--mixup``), the lesion head's
Dice + BCE and box projection, distillation from a teacher, the counterfactual pair term and the guidance term.

A callable of its own so that the trainer can evaluate it more than once per step: sharpness-aware minimisation
(``sam``) takes its gradient a second time at perturbed weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from ..models.network import TumorNet
from .config import TrainConfig
from .losses import distill_loss, guidance_loss, lesion_loss, pair_loss, projection_loss, type_loss
from .mixup import Mix, mixed_loss


@dataclass
class BatchLoss:
    """The run's fixed parts of the loss; ``__call__`` gives one batch's total (a scalar tensor with its graph)."""

    model: TumorNet
    cfg: TrainConfig
    heads: dict[str, list[str]]
    weights: dict[str, torch.Tensor]
    teacher: torch.nn.Module | None
    normal_index: int | None
    _taught: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)  # (batch, teacher's logits)

    def __call__(self, x: torch.Tensor, ys: dict[str, Any], mix: Mix | None) -> torch.Tensor:
        """``x``: the batch (mixed where ``mix`` is given); with ``ys["twin"]`` its counterfactual twins join one
        forward pass, and only the pair term sees them."""
        cfg, model, n, batch = self.cfg, self.model, len(x), x
        if "twin" in ys:
            x = torch.cat([x, ys["twin"]])
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            feats, lesion_logits = model.features_and_lesion(x)
            logits = model.forward_head(feats)
        pair = None
        if "twin" in ys:
            pair = pair_loss(logits["type"][:n], logits["type"][n:], ys["twin_kind"], self.normal_index,  # type: ignore[arg-type]
                             cfg.pair_margin, cfg.pair_elsewhere)
            feats, logits = feats[:n], {h: v[:n] for h, v in logits.items()}
            lesion_logits = None if lesion_logits is None else lesion_logits[:n]
        loss: Any = sum(mixed_loss(partial(type_loss, logits[h], weight=self.weights[h],
                                           label_smoothing=cfg.label_smoothing, gamma=cfg.focal_gamma), ys[h], mix)
                        for h in self.heads if not cfg.lesion_only)
        if lesion_logits is not None and not cfg.head_only:  # it reaches the backbone after the warm-up (not with --lesion-only)
            loss = loss + cfg.lesion_weight * lesion_loss(lesion_logits, ys["mask"])[0]
            if cfg.projection_weight > 0:
                loss = loss + cfg.projection_weight * projection_loss(lesion_logits, ys["mask"])
        if self.teacher is not None:
            if self._taught is None or self._taught[0] is not batch:  # SAM's second pass reuses the teacher's call
                with torch.no_grad():
                    self._taught = (batch, self.teacher(x[:n])["type"])
            t_logits = self._taught[1]
            keep = ~ys["covered"] if "covered" in ys else torch.ones(n, dtype=torch.bool)
            loss = loss + cfg.distill_weight * distill_loss(logits["type"], t_logits, keep)
        if pair is not None:
            loss = loss + pair
        if cfg.guidance_weight > 0 and "mask" in ys:
            w_type = model.heads["head_type"].weight
            loss = loss + cfg.guidance_weight * guidance_loss(feats, w_type, ys["type"], ys["mask"])  # type: ignore[arg-type]
        return loss  # type: ignore[no-any-return]
