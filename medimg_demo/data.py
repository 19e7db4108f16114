"""``manifest.csv`` -> in-memory, pre-resized dataset; modality-aware augmentation for training."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from .errors import DataError, InputError
from .io import read_file
from .preprocess import normalize, resize_gray
from .registry import REPO_ROOT, InputConfig

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("image", "label", "split")


def data_root() -> Path:
    """``MEDIMG_DATA_DIR``, else ``../shared/data`` beside the checkout."""
    env = os.environ.get("MEDIMG_DATA_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def resolve_data_dir(data: str | Path | None, task: str | None) -> Path:
    """A data set folder (with manifest.csv) from ``--data`` (a set folder or a root holding ``task``/)."""
    base = Path(data) if data else data_root()
    if (base / "manifest.csv").is_file():
        return base
    if task and (base / task / "manifest.csv").is_file():
        return base / task
    raise DataError(
        f"No manifest.csv in {base}" + (f" or {base / task}" if task else "")
        + "; pass --data with a data set folder or set MEDIMG_DATA_DIR."
    )


def read_manifest(folder: Path) -> pd.DataFrame:
    path = folder / "manifest.csv"
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError) as exc:
        raise DataError(f"Cannot read {path}: {exc}") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path} lacks the column(s) {missing}; it needs {list(REQUIRED_COLUMNS)} (and optionally 'stage').")
    return df


def split_frame(df: pd.DataFrame, split: str) -> pd.DataFrame:
    out = df[df["split"] == split].reset_index(drop=True)
    if out.empty:
        raise DataError(f"Split {split!r} has no rows; the manifest has splits {sorted(df['split'].unique())}.")
    return out


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


@dataclass(frozen=True)
class Augment:
    """Augmentation that respects the modality: no flips where left/right anatomy matters (CT chest)."""

    hflip: bool = False
    degrees: float = 10.0
    translate: float = 0.06
    scale: tuple[float, float] = (0.9, 1.1)
    brightness: float = 0.08
    contrast: float = 0.15
    gamma: float = 0.2

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """x: (1, H, W) grey in [0, 1] -> augmented copy."""
        import torchvision.transforms.v2.functional as TF

        def u(a: float, b: float) -> float:
            return float(a + (b - a) * torch.rand((), generator=g))

        if self.hflip and u(0, 1) < 0.5:
            x = torch.flip(x, dims=[-1])
        h, w = x.shape[-2:]
        x = TF.affine(
            x,
            angle=u(-self.degrees, self.degrees),
            translate=[u(-self.translate, self.translate) * w, u(-self.translate, self.translate) * h],
            scale=u(*self.scale),
            shear=[0.0, 0.0],
            interpolation=TF.InterpolationMode.BILINEAR,
        )
        gamma = math.exp(u(-self.gamma, self.gamma))
        x = x.clamp(0, 1) ** gamma
        x = (x - 0.5) * (1 + u(-self.contrast, self.contrast)) + 0.5 + u(-self.brightness, self.brightness)
        return x.clamp(0, 1)


#: Per-task augmentation: CT chest is not flipped (situs), US and axial MRI may be.
TASK_AUGMENT = {
    "lung_ct": Augment(hflip=False),
    "breast_us": Augment(hflip=True),
    "brain_mri": Augment(hflip=True),
}


class ManifestDataset(Dataset):
    """Images of one split, decoded once, with integer targets per head."""

    def __init__(
        self,
        folder: Path,
        frame: pd.DataFrame,
        heads: dict[str, list[str]],
        input_cfg: InputConfig,
        augment: Augment | None = None,
        seed: int = 0,
        desc: str = "decode",
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

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = torch.from_numpy(self.images[i].astype(np.float32))[None]
        if self.augment is not None:
            x = self.augment(x, self._g)
        return normalize(x, self.input_cfg), {k: v[i] for k, v in self.targets.items()}
