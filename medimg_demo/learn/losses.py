"""Losses of the lesion head and of the guidance term.

- ``lesion_loss``: BCE on every image plus soft Dice on images with a lesion, at the head's resolution (the mask
  is area-averaged down to it, so a small lesion still counts).
- ``guidance_loss`` (right for the right reasons; GAIN-style attention guidance): the true class's evidence map
  must peak on the annotated lesion. For a head that average-pools the last feature map and applies a linear layer,
  that evidence map is exactly the class activation map (and Grad-CAM at that layer, up to ReLU and a constant), so
  it costs one einsum and no second backward.
- ``projection_loss`` (Tian et al., BoxInst, CVPR 2021): the lesion map's column and row maxima must match the
  annotation's, i.e. the predicted lesion's extent is the annotated box's. Box-derived masks tell the head where the
  box is, not which pixels in it are tumor; this term trains exactly what a box gives.
- ``pair_loss`` (paired counterfactuals): the same image without its lesion must lean further to no tumor by a
  margin, and with a region elsewhere in-filled must not move; nothing is relabelled, so unlike covers labelled no
  tumor it cannot be met by a learned prior for no tumor.
- ``class_weights``, ``erased_class_weights``: the cross-entropy's class weights, inverse to the label counts (after
  counterfactual covering, for the latter).
- ``type_loss``: the heads' cross-entropy (class weights, label smoothing), or with ``gamma`` > 0 the focal loss
  (Lin et al., ICCV 2017), which Mukhoti et al. (NeurIPS 2020) found better calibrated than cross-entropy.
- ``distill_loss`` (Hinton et al., 2015): the type head follows a teacher's softened probabilities on the images
  whose label the counterfactual covering left alone, so grounding the call need not cost the teacher's accuracy.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def lesion_loss(logits: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, h, w) logits, (N, 1, H, W) mask in {0, 1} -> (BCE + Dice, Dice score of the lesion images)."""
    target = F.adaptive_avg_pool2d(mask, logits.shape[-2:])
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    has = target.flatten(1).sum(1) > 0
    if not bool(has.any()):
        return bce, torch.ones(())
    inter = (p * target).flatten(1).sum(1)[has]
    denom = (p.flatten(1).sum(1) + target.flatten(1).sum(1))[has]
    dice = (2 * inter + 1.0) / (denom + 1.0)
    return bce + (1 - dice).mean(), dice.mean().detach()


def _dice_1d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 1 - (2 * (a * b).sum(-1) + 1) / ((a * a).sum(-1) + (b * b).sum(-1) + 1)


def projection_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, 1, h, w) logits, (N, 1, H, W) mask -> Dice loss of the x and y max-projections (BoxInst), averaged over
    the images with a lesion (zero when there is none; BCE in ``lesion_loss`` covers lesion-free images)."""
    target = F.adaptive_avg_pool2d(mask, logits.shape[-2:])[:, 0]
    has = target.flatten(1).sum(1) > 0
    if not bool(has.any()):
        return logits.sum() * 0.0
    p, t = torch.sigmoid(logits.float())[has, 0], target[has]
    return (_dice_1d(p.amax(-2), t.amax(-2)) + _dice_1d(p.amax(-1), t.amax(-1))).mean()


def guidance_loss(features: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Where the target class's evidence peaks: minus the log of the share of the evidence map's spatial softmax that
    falls on lesion cells (each cell weighted by the share of its pixels that are lesion), averaged over images with
    a lesion. It is zero only when the evidence peaks where the lesion is, whatever the map's sign: a bare "no
    evidence outside" penalty is also met by a map with no positive evidence anywhere (the heatmap of a class that
    wins by its bias), which points nowhere.

    features (N, C, h, w): the map the head pools; weight (K, C): the head's linear weights; target (N,): class;
    mask (N, 1, H, W): lesion.
    """
    cam = torch.einsum("nc,nchw->nhw", weight[target].float(), features.float())
    share = F.adaptive_avg_pool2d(mask, features.shape[-2:])[:, 0]
    has = share.flatten(1).sum(1) > 0
    if not bool(has.any()):
        return features.sum() * 0.0
    w = share / share.flatten(1).amax(1).clamp(min=1e-6)[:, None, None]
    p = torch.softmax(cam.flatten(1), dim=1)
    on_lesion = (p * w.flatten(1)).sum(1)
    return -torch.log(on_lesion[has] + 1e-6).mean()


def type_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
              label_smoothing: float = 0.0, gamma: float = 0.0) -> torch.Tensor:
    """(N, K) logits, (N,) classes -> the weighted mean of each image's (label-smoothed) cross-entropy, each times
    ``(1 - p_true) ** gamma`` (the focal loss; ``gamma`` 0 is ``F.cross_entropy`` exactly)."""
    logits = logits.float()
    if gamma == 0:
        return F.cross_entropy(logits, target, weight=weight, label_smoothing=label_smoothing)
    per = F.cross_entropy(logits, target, reduction="none", label_smoothing=label_smoothing)
    p_true = torch.softmax(logits, dim=1).gather(1, target[:, None])[:, 0]
    per = (1 - p_true).clamp(min=0).pow(gamma) * per
    w = torch.ones_like(per) if weight is None else weight.float()[target]
    return (per * w).sum() / w.sum().clamp(min=1e-12)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, keep: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """KL(teacher || student) of the softened type probabilities, times T^2, averaged over the ``keep`` images
    (N,) bool: those whose lesion was not covered; zero if there are none."""
    if not bool(keep.any()):
        return student.sum() * 0.0
    t = temperature
    log_s = F.log_softmax(student[keep].float() / t, dim=1)
    log_t = F.log_softmax(teacher[keep].float() / t, dim=1)
    return F.kl_div(log_s, log_t, log_target=True, reduction="batchmean") * t * t


def no_tumor_log_odds(logits: torch.Tensor, normal: int) -> torch.Tensor:
    """(N, K) logits -> (N,) log of p(no tumor) / p(any tumor class)."""
    z = logits.float()
    others = torch.cat([z[:, :normal], z[:, normal + 1:]], dim=1)
    return z[:, normal] - torch.logsumexp(others, dim=1)


def pair_loss(image: torch.Tensor, twin: torch.Tensor, kind: torch.Tensor, normal: int, margin: float,
              elsewhere_weight: float = 1.0) -> torch.Tensor:
    """Logits of images and of their twins (N, K), ``kind`` (N,) as ``counterfactual.twin`` gives it: a hinge that
    asks a lesion-removed twin's no-tumor log-odds to exceed the image's by ``margin``, plus ``elsewhere_weight``
    times the absolute change of a twin with a region elsewhere in-filled; each averaged over its pairs (zero where
    there are none)."""
    d = no_tumor_log_odds(twin, normal) - no_tumor_log_odds(image, normal)
    removed, elsewhere = kind == 1, kind == 0
    loss = image.sum() * 0.0
    if bool(removed.any()):
        loss = loss + F.relu(margin - d[removed]).mean()
    if bool(elsewhere.any()):
        loss = loss + elsewhere_weight * d[elsewhere].abs().mean()
    return loss


def class_weights(targets: torch.Tensor, n: int) -> torch.Tensor:
    """Cross-entropy class weights inverse to the label counts (a class never seen counts once)."""
    counts = torch.bincount(targets, minlength=n).float().clamp(min=1)
    return counts.sum() / (n * counts)


def erased_class_weights(targets: torch.Tensor, masks: np.ndarray, normal: int, n: int, p: float) -> torch.Tensor:
    """Class weights from the expected label counts under counterfactual covering (probability ``p`` per lesion)."""
    has = torch.from_numpy(masks.reshape(len(masks), -1).any(1))
    counts = torch.bincount(targets, minlength=n).float()
    moved = torch.bincount(targets[has], minlength=n).float() * p
    counts = (counts - moved).clamp(min=1)
    counts[normal] += float(moved.sum())
    return counts.sum() / (n * counts)
