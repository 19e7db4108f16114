"""Epoch selection on val: the lesion-erasure test a run can select on, and the score that weighs it."""

from __future__ import annotations

import numpy as np
import torch

from medimg_demo.learn.selection import lesion_score, selection_score, val_box_hits, val_erasure
from medimg_demo.models.config import InputConfig

CFG = InputConfig(size=(48, 48), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


class _Split:
    """The parts of a ManifestDataset that val_erasure reads: 4 tumor images (bright square) and 2 normal ones."""

    def __init__(self) -> None:
        self.images = np.full((6, 48, 48), 0.3, dtype=np.float16)
        self.masks = np.zeros((6, 48, 48), dtype=np.uint8)
        for i in range(4):
            self.images[i, 10 + i:20 + i, 12:22] = 1.0
            self.masks[i, 10 + i:20 + i, 12:22] = 1
        self.targets = {"type": torch.tensor([1, 1, 1, 1, 0, 0])}
        self.input_cfg = CFG

    def __len__(self) -> int:
        return len(self.images)


class _BrightSpot(torch.nn.Module):
    """Calls tumor (1) when any pixel is brighter than 0.8 on the 0-1 grey scale, or always, with ``context``."""

    def __init__(self, context: bool = False) -> None:
        super().__init__()
        self.context = context

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        grey = x[:, 0] * 0.5 + 0.5
        tumor = torch.ones(len(x)) if self.context else (grey.flatten(1).amax(1) > 0.8).float()
        return {"type": torch.stack([1 - tumor, tumor], 1)}


def test_a_model_that_needs_the_lesion_loses_its_call_and_one_that_reads_context_keeps_it() -> None:
    split = _Split()
    logits = torch.tensor([[0.0, 1.0]] * 3 + [[1.0, 0.0]] + [[1.0, 0.0]] * 2)  # the 4th tumor is missed
    needs = val_erasure(_BrightSpot(), split, logits)  # type: ignore[arg-type]
    assert needs == {"erase_lost": 1.0, "elsewhere_kept": 1.0}
    context = val_erasure(_BrightSpot(context=True), split, logits)  # type: ignore[arg-type]
    assert context["erase_lost"] == 0.0


def test_selection_score_weighs_the_erasure_test_only_when_asked() -> None:
    base = {"type_macro_f1": 0.90, "lesion_dice": 0.7, "loss": 0.3}
    assert selection_score({**base, "erase_lost": 0.6, "elsewhere_kept": 1.0}, 0.0) == selection_score(base, 0.0)
    better = selection_score({**base, "erase_lost": 0.6, "elsewhere_kept": 1.0}, 0.3)
    careless = selection_score({**base, "erase_lost": 0.6, "elsewhere_kept": 0.80}, 0.3)
    assert better > selection_score(base, 0.3) and careless < better


def test_val_box_hits_counts_boxes_of_iou_at_least_half_on_annotated_images_only() -> None:
    """The head's map (here at half the input size) upsampled and cut at 0.5: a box on the annotation is a hit, one
    beside it a miss; an image without annotation does not count, whatever the map shows."""
    masks = np.zeros((3, 48, 48), dtype=np.uint8)
    masks[0, 8:24, 8:24] = 1
    masks[1, 8:24, 8:24] = 1
    probs = torch.zeros(3, 1, 24, 24)
    probs[0, 0, 4:12, 4:12] = 1.0  # on the box
    probs[1, 0, 14:22, 14:22] = 1.0  # beside it
    probs[2, 0, 0:10, 0:10] = 1.0  # no annotation
    assert val_box_hits(probs, masks) == 0.5
    probs[1] = probs[0]
    assert val_box_hits(probs, masks) == 1.0
    assert val_box_hits(probs, np.zeros_like(masks)) == 0.0


def test_lesion_score_prefers_box_hits_then_dice() -> None:
    assert lesion_score({"lesion_box_hits": 0.7, "lesion_dice": 0.9, "type_macro_f1": 1.0}) == 0.7
    assert lesion_score({"lesion_dice": 0.9, "type_macro_f1": 1.0}) == 0.9
    assert lesion_score({"type_macro_f1": 1.0}) == 0.0
