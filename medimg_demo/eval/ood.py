"""Out-of-distribution sets built from what is at hand offline, and how well a gate refuses them.

Sets: the other tasks' images (the same split as the in-distribution images), natural images (scikit-image's
data and matplotlib's sample photo, with crops), uniform and smooth noise, flat and gradient images, rendered text
"screenshots", and the DICOM sample images the DICOM library ships (other modalities are refused by the header
check before any score).
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw, ImageFont
from sklearn.metrics import roc_auc_score, roc_curve

from ..errors import InputError
from ..imaging.decode import read_bytes
from ..imaging.samples import dicom_sample_images
from ..imaging.study import Study
from ..manifest import read_manifest, split_frame
from ..models.config import ModelConfig
from ..models.gate import GateStats, header_refusal
from ..models.network import TumorNet
from ..models.preprocess import model_pixels, to_tensor
from ..tasks import TASK_ORDER

log = logging.getLogger(__name__)

OTHER_TASK_IMAGES = 150  # per other task


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _natural() -> list[bytes]:
    out: list[bytes] = []
    try:
        import skimage.data as sd
    except ImportError:  # a dev dependency; without it the set is smaller, and says so in its size
        log.warning("scikit-image is not installed: the natural-image OOD set holds matplotlib's photo only")
        sd = None
    names = ["astronaut", "brick", "camera", "cat", "cell", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
             "horse", "hubble_deep_field", "immunohistochemistry", "moon", "retina", "rocket", "shepp_logan_phantom",
             "microaneurysms", "logo"]
    images = []
    for name in names if sd is not None else []:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = np.asarray(getattr(sd, name)())
        images.append(arr)
    import matplotlib

    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if photo.is_file():
        images.append(np.asarray(Image.open(photo)))
    for arr in images:
        if arr.dtype != np.uint8:
            arr = arr.astype(np.float64)
            arr = (255 * (arr - arr.min()) / max(float(arr.max() - arr.min()), 1e-9)).astype(np.uint8)
        if arr.ndim == 3:
            arr = arr[..., :3]
        h, w = arr.shape[:2]
        out.append(_png(arr))
        out.append(_png(np.ascontiguousarray(arr[h // 4: h - h // 4, w // 4: w - w // 4])))  # a central crop
    return out


def _noise(rng: np.random.Generator, n: int = 40) -> list[bytes]:
    out = []
    for i in range(n):
        size = int(rng.choice([128, 224, 320]))
        if i % 2:
            arr = rng.integers(0, 256, (size, size), dtype=np.uint8)
        else:  # smooth noise: upsampled coarse noise
            coarse = Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8))
            arr = np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC))
        out.append(_png(arr))
    return out


def _flat(n: int = 20) -> list[bytes]:
    out = []
    for i in range(n):
        level = int(round(255 * i / (n - 1)))
        if i % 2:
            arr = np.full((224, 224), level, dtype=np.uint8)
        else:  # a shallow gradient
            arr = np.clip(level + np.linspace(-30, 30, 224)[None, :].repeat(224, 0), 0, 255).astype(np.uint8)
        out.append(_png(arr))
    return out


def _text(rng: np.random.Generator, n: int = 20) -> list[bytes]:
    words = ("patient report findings impression scan window level series image dose protocol contrast slice "
             "axial coronal sagittal lesion normal follow-up recommended").split()
    out = []
    for i in range(n):
        img = Image.new("L", (320, 240), 255 if i % 2 else 30)
        draw = ImageDraw.Draw(img)
        font = ImageFont.load_default(size=int(rng.choice([11, 14, 18])))
        for row in range(12):
            line = " ".join(rng.choice(words, size=6))
            draw.text((8, 6 + row * 19), line, fill=0 if i % 2 else 230, font=font)
        out.append(_png(np.asarray(img)))
    return out


def ood_sets(task: str, data_root: Path, split: str, seed: int = 0) -> dict[str, list[bytes]]:
    """Named OOD sets of raw file bytes for a model of ``task``; the other tasks' images come from ``split``."""
    rng = np.random.default_rng(seed)
    sets: dict[str, list[bytes]] = {}
    for other in TASK_ORDER:
        folder = data_root / other
        if other == task or not (folder / "manifest.csv").is_file():
            continue
        df = split_frame(read_manifest(folder), split)
        df = df.sample(n=min(OTHER_TASK_IMAGES, len(df)), random_state=seed)
        sets[f"task:{other}"] = [(folder / p).read_bytes() for p in df["image"]]
    sets["natural"] = _natural()
    sets["noise"] = _noise(rng)
    sets["flat"] = _flat()
    sets["text"] = _text(rng)
    sets["dicom"] = dicom_sample_images()
    return sets


@dataclass(frozen=True)
class Scored:
    """Scores of a set of files: OOD score per method, header refusals, and files that could not be read."""

    scores: dict[str, np.ndarray]
    header_refused: np.ndarray
    unreadable: int


@torch.no_grad()
def score_files(model: TumorNet, cfg: ModelConfig, stats: dict[str, GateStats], files: list[bytes]) -> Scored:
    """Decode each file as the app does, run the model, and score it with every method."""
    studies: list[Study] = []
    unreadable = 0
    for data in files:
        try:
            studies.append(read_bytes(data))
        except InputError:
            unreadable += 1
    header = np.array([header_refusal(s.modality, s.body_part, cfg.task) is not None for s in studies], dtype=bool)
    feats, logits = [], []
    for i in range(0, len(studies), 32):
        x = torch.cat([to_tensor(model_pixels(s, cfg.input), cfg.input) for s in studies[i: i + 32]])
        pooled = model.pooled(model.forward_features(x))
        feats.append(pooled.numpy())
        logits.append(model.head_logits(pooled)["type"].numpy())
    if not studies:
        return Scored(scores={m: np.zeros(0) for m in stats}, header_refused=header, unreadable=unreadable)
    f, lg = np.concatenate(feats), np.concatenate(logits)
    return Scored(scores={m: s.score(f, lg) for m, s in stats.items()}, header_refused=header, unreadable=unreadable)


def fpr_at_95_tpr(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Share of OOD images accepted when the threshold accepts 95% of in-distribution images."""
    y = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]  # positive = in-distribution
    fpr, tpr, _ = roc_curve(y, -np.r_[id_scores, ood_scores])
    return float(fpr[np.searchsorted(tpr, 0.95, side="left")])


def auroc(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """AUROC of the score separating OOD (positive) from in-distribution images."""
    y = np.r_[np.zeros(len(id_scores)), np.ones(len(ood_scores))]
    return float(roc_auc_score(y, np.r_[id_scores, ood_scores]))


def comparison(id_scores: dict[str, np.ndarray], sets: dict[str, Scored], thresholds: dict[str, float],
               split: str) -> pd.DataFrame:
    """One row per method and set: AUROC, FPR at 95% TPR, and the share refused (header or score) at the
    method's threshold; plus the in-distribution refusal per method and an 'all OOD' row."""
    rows = []
    for method, ids in id_scores.items():
        thr = thresholds[method]
        rows.append({"split": split, "method": method, "set": "in-distribution", "n": len(ids), "auroc": np.nan,
                     "fpr_at_95_tpr": np.nan, "refused": float((ids > thr).mean())})
        pooled_ood, pooled_refused = [], []
        for name, sc in sets.items():
            s = sc.scores[method]
            refused = (s > thr) | sc.header_refused
            pooled_ood.append(s)
            pooled_refused.append(refused)
            rows.append({"split": split, "method": method, "set": name, "n": len(s),
                         "auroc": auroc(ids, s) if len(s) else np.nan,
                         "fpr_at_95_tpr": fpr_at_95_tpr(ids, s) if len(s) else np.nan,
                         "refused": float(refused.mean()) if len(s) else np.nan})
        s, r = np.concatenate(pooled_ood), np.concatenate(pooled_refused)
        rows.append({"split": split, "method": method, "set": "all OOD", "n": len(s), "auroc": auroc(ids, s),
                     "fpr_at_95_tpr": fpr_at_95_tpr(ids, s), "refused": float(r.mean())})
    return pd.DataFrame(rows)
