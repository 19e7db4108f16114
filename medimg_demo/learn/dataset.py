"""A manifest split decoded once into memory (same reader as the app), pre-resized, with targets per head."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ..errors import DataError, InputError
from ..explain.lesion import annotation_mask
from ..imaging.decode import read_file
from ..models.config import InputConfig
from ..models.preprocess import normalize, resize_gray
from ..tasks import AugmentSpec
from .augment import apply_augment
from .counterfactual import counterfactual, twin

log = logging.getLogger(__name__)


def load_images(folder: Path, rel_paths: list[str], size: tuple[int, int], interpolation: str, desc: str = "decode") -> np.ndarray:
    """Decode every image once (same reader as the app) and resize; (N, H, W) float16 in [0, 1]."""
    out = np.empty((len(rel_paths), size[0], size[1]), dtype=np.float16)
    for i, rel in enumerate(tqdm(rel_paths, desc=desc, unit="img", leave=False, mininterval=1.0)):
        try:
            study = read_file(folder / rel)
        except InputError as exc:
            raise DataError(f"Image {rel} in {folder} cannot be read: {exc}") from exc
        out[i] = resize_gray(study.pixels, size, interpolation)
    return out


def load_masks(folder: Path, frame: pd.DataFrame, size: tuple[int, int]) -> np.ndarray:
    """Annotated lesion of every row as (N, H, W) uint8 in {0, 1} at ``size``; all zero where a row has none."""
    out = np.zeros((len(frame), size[0], size[1]), dtype=np.uint8)
    for i, (_, row) in enumerate(frame.iterrows()):
        m = annotation_mask(row, folder, size)
        if m is not None:
            out[i] = m
    return out


class ManifestDataset(Dataset):
    """Images of one split, decoded once, with integer targets per head; with ``lesions``, the annotated lesion
    masks too (target ``"mask"``), and with ``erase`` = (p lesion, p elsewhere) counterfactual images (see
    ``counterfactual``) whose covered lesion turns the type target into ``normal_label`` (target ``"covered"``
    says so, for distillation). With ``pairs``, each image also brings its counterfactual twin (targets ``"twin"``,
    an input like the image's, and ``"twin_kind"``: see ``counterfactual.twin``), its label unchanged."""

    def __init__(
        self,
        folder: Path,
        frame: pd.DataFrame,
        heads: dict[str, list[str]],
        input_cfg: InputConfig,
        augment: AugmentSpec | None = None,
        seed: int = 0,
        desc: str = "decode",
        lesions: bool = False,
        erase: tuple[float, float] = (0.0, 0.0),
        normal_label: str | None = None,
        infill: str = "patch",
        pairs: bool = False,
    ) -> None:
        self.frame = frame
        self.input_cfg = input_cfg
        self.augment = augment
        self.images = load_images(folder, frame["image"].tolist(), input_cfg.size, input_cfg.interpolation, desc)
        self.targets: dict[str, torch.Tensor] = {}
        for head, labels in heads.items():
            col = "label" if head == "type" else head
            values = frame[col].tolist()
            unknown = sorted(set(values) - set(labels))
            if unknown:
                raise DataError(f"Column {col!r} has labels {unknown} not in the model's {labels}.")
            self.targets[head] = torch.tensor([labels.index(v) for v in values], dtype=torch.long)
        self._g = torch.Generator().manual_seed(seed)
        self._rng = np.random.default_rng(seed)
        self.masks = load_masks(folder, frame, input_cfg.size) if lesions else None
        self.erase = erase
        self.infill = infill
        self.pairs = pairs and self.masks is not None  # a counterfactual twin per image (``counterfactual.twin``)
        labels = heads.get("type", [])
        self.normal_index = labels.index(normal_label) if normal_label in labels else None
        if (any(erase) or self.pairs) and self.normal_index is None:
            raise DataError(f"Counterfactual erasure needs the no-tumor label {normal_label!r} among {labels}.")

    def __len__(self) -> int:
        return len(self.frame)

    def augmented(self, augment: AugmentSpec, seed: int) -> "ManifestDataset":
        """The same decoded images and targets, each drawn through ``augment`` from generators seeded with ``seed``
        (e.g. perturbed copies of val for a drift calibration); this data set is left as it is."""
        other = copy.copy(self)
        other.augment = augment
        other._g = torch.Generator().manual_seed(seed)
        other._rng = np.random.default_rng(seed)
        return other

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        img = self.images[i].astype(np.float32)
        targets = {k: v[i] for k, v in self.targets.items()}
        mask_t: torch.Tensor | None = None
        if self.masks is not None:
            lesion = self.masks[i].astype(bool)
            if any(self.erase):
                img, covered, _ = counterfactual(img, lesion, self._rng, *self.erase, infill=self.infill)
                targets["covered"] = torch.tensor(bool(covered))
                if covered:
                    lesion = np.zeros_like(lesion)
                    targets["type"] = torch.tensor(self.normal_index, dtype=torch.long)
            mask_t = torch.from_numpy(lesion.astype(np.float32))[None]
            if self.pairs:
                other, kind = twin(img, lesion, self._rng, self.infill)
                t = torch.from_numpy(np.ascontiguousarray(other, dtype=np.float32))[None]
                t = apply_augment(t, self.augment, self._g, None)[0] if self.augment is not None else t
                targets["twin"], targets["twin_kind"] = normalize(t, self.input_cfg), torch.tensor(kind)
        x = torch.from_numpy(np.ascontiguousarray(img))[None]
        if self.augment is not None:
            x, mask_t = apply_augment(x, self.augment, self._g, mask_t)
        if mask_t is not None:
            targets["mask"] = mask_t
        return normalize(x, self.input_cfg), targets


@torch.no_grad()
def predict_logits(model: torch.nn.Module, ds: ManifestDataset, batch_size: int = 64, bf16: bool = False,
                   lesion: bool = False) -> dict[str, torch.Tensor]:
    """Logits of every image in ``ds``, in order (through its augmentation, if it has one: see ``augmented``); used
    for selection, calibration and evaluation.
    With ``lesion`` (a model with a lesion head), also ``"lesion"``: lesion probabilities (N, 1, h, w)."""
    from torch.utils.data import DataLoader

    model.eval()
    outs: dict[str, list[torch.Tensor]] = {}
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False)
    for x, _ in loader:
        if bf16:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if lesion:
                feats, lesion_logits = model.features_and_lesion(x)
                out = {**model.forward_head(feats), "lesion": torch.sigmoid(lesion_logits.float())}
            else:
                out = model(x)
        for k, v in out.items():
            outs.setdefault(k, []).append(v.float())
    return {k: torch.cat(v) for k, v in outs.items()}
