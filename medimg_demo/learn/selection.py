"""Epoch selection on the val split: classification scores, the lesion head's Dice and, where asked, the lesion
erasure test (the same border in-fill and region-elsewhere draw as ``eval.lesions``, at the model's input size).

Selecting on the erasure test is what turns counterfactual training into a model whose call needs the lesion:
without it, selection by F1 alone picks the epoch that still reads the context (see the brain and breast cards).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score

from ..explain.lesion import anatomy, box_iou, erase, largest_component, mask_box, region_elsewhere
from ..models.preprocess import normalize
from .dataset import ManifestDataset


def val_scores(logits: dict[str, torch.Tensor], ds: ManifestDataset,
               weights: dict[str, torch.Tensor]) -> dict[str, float]:
    """Accuracy and macro F1 per head, and the summed class-weighted cross-entropy (``loss``)."""
    scores: dict[str, float] = {}
    loss = 0.0
    for head, lg in logits.items():
        y = ds.targets[head]
        loss += float(F.cross_entropy(lg, y, weight=weights[head]))
        pred = lg.argmax(1)
        scores[f"{head}_acc"] = float((pred == y).float().mean())
        scores[f"{head}_macro_f1"] = float(f1_score(y.numpy(), pred.numpy(), labels=list(range(lg.shape[1])),
                                                    average="macro", zero_division=0))
    scores["loss"] = loss
    return scores


def val_dice(probs: torch.Tensor, masks: np.ndarray) -> float:
    """Median Dice of the val images with a lesion, the head's map upsampled to the input size, cut at 0.5."""
    up = F.interpolate(probs, size=masks.shape[-2:], mode="bilinear", align_corners=False)[:, 0] > 0.5
    gt = torch.from_numpy(masks.astype(bool))
    has = gt.flatten(1).any(1)
    if not bool(has.any()):
        return 0.0
    inter = (up & gt).flatten(1).sum(1).float()
    dice = 2 * inter / (up.flatten(1).sum(1) + gt.flatten(1).sum(1)).clamp(min=1).float()
    return float(dice[has].median())


def val_box_hits(probs: torch.Tensor, masks: np.ndarray) -> float:
    """Share of the val images with an annotated box whose predicted lesion (largest component of the map upsampled
    to the input size and cut at 0.5, as the app draws it) has a box of IoU >= 0.5 with it."""
    up = F.interpolate(probs, size=masks.shape[-2:], mode="bilinear", align_corners=False)[:, 0].numpy() > 0.5
    hits = [box_iou(mask_box(largest_component(p)), mask_box(g)) >= 0.5
            for p, g in zip(up, masks.astype(bool)) if g.any()]
    return float(np.mean(hits)) if hits else 0.0


@torch.no_grad()
def val_erasure(model: torch.nn.Module, ds: ManifestDataset, type_logits: torch.Tensor, seed: int = 0,
                batch_size: int = 64) -> dict[str, float]:
    """On the correctly called val images with an annotated lesion: the share whose call changes when the lesion is
    in-filled from its border (``erase_lost``) and the share whose call stays when a same-shaped region elsewhere
    in the anatomy is (``elsewhere_kept``). Empty when the split has no such image."""
    if ds.masks is None:
        return {}
    pred = type_logits.argmax(1)
    rng = np.random.default_rng(seed)
    lesion_imgs, other_imgs, lesion_idx, other_idx = [], [], [], []
    for i in range(len(ds)):
        mask = ds.masks[i].astype(bool)
        if not mask.any() or int(pred[i]) != int(ds.targets["type"][i]):
            continue
        img = ds.images[i].astype(np.float32)
        lesion_imgs.append(erase(img, mask))
        lesion_idx.append(i)
        moved = region_elsewhere(mask, rng, inside=anatomy(img))
        if moved is not None:
            other_imgs.append(erase(img, moved))
            other_idx.append(i)
    if not lesion_idx:
        return {}
    model.eval()

    def calls(images: list[np.ndarray]) -> torch.Tensor:
        out = []
        for s in range(0, len(images), batch_size):
            x = torch.stack([normalize(torch.from_numpy(np.clip(a, 0, 1))[None], ds.input_cfg)
                             for a in images[s:s + batch_size]])
            out.append(model(x.contiguous(memory_format=torch.channels_last))["type"].argmax(1))
        return torch.cat(out)

    scores = {"erase_lost": float((calls(lesion_imgs) != pred[lesion_idx]).float().mean())}
    if other_idx:
        scores["elsewhere_kept"] = float((calls(other_imgs) == pred[other_idx]).float().mean())
    return scores


def lesion_score(scores: dict[str, float]) -> float:
    """Epoch selection when only the lesion head trains: the val box hits where the annotations are boxes, else the
    median Dice."""
    return scores.get("lesion_box_hits", scores.get("lesion_dice", 0.0))


def selection_score(scores: dict[str, float], erasure_weight: float) -> float:
    """Macro F1 of the type head, plus a tenth of the lesion Dice, plus ``erasure_weight`` times the erasure test
    (call lost, less any shortfall of calls kept below 0.95); ties broken by lower val loss."""
    score = scores["type_macro_f1"] + 0.1 * scores.get("lesion_dice", 0.0) - 1e-4 * scores["loss"]
    if erasure_weight and "erase_lost" in scores:
        shortfall = max(0.0, 0.95 - scores.get("elsewhere_kept", 1.0))
        score += erasure_weight * (scores["erase_lost"] - shortfall)
    return score
