"""Error gallery: image | Grad-CAM pairs of the misclassified test cases, most confident mistakes first.

Drawn into the runs folder, never into the repository: these are data set images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..explain.overlay import gray_to_rgb, overlay
from ..imaging.decode import read_file
from ..models.config import ModelConfig
from ..predict import get_predictor

MAX_GALLERY = 24


def write_gallery(cfg: ModelConfig, data_dir: Path, cases: pd.DataFrame, out: Path, limit: int = MAX_GALLERY) -> int:
    """Write the gallery PNGs and ``index.csv`` under ``out``; returns how many cases were drawn."""
    from PIL import Image

    wrong = cases[cases["pred"] != cases["label"]].copy()
    if wrong.empty:
        return 0
    wrong["conf"] = [row[f"p_{row['pred']}"] for _, row in wrong.iterrows()]
    wrong = wrong.sort_values("conf", ascending=False).head(limit)
    out.mkdir(parents=True, exist_ok=True)
    predictor = get_predictor(cfg)  # the process's shared, already loaded model
    rows = []
    for k, (_, row) in enumerate(wrong.iterrows()):
        study = read_file(data_dir / row["image"])
        pred = predictor.run(study, explain=True, gate=False)  # the classifier's own view, refused or not
        pair = np.concatenate([gray_to_rgb(pred.image), overlay(pred.image, pred.heatmap, 0.45)], axis=1)  # type: ignore[arg-type]
        name = f"{k:02d}.png"
        Image.fromarray(pair).save(out / name)
        rows.append({"file": name, "image": row["image"], "label": row["label"], "pred": row["pred"], "confidence": row["conf"]})
    pd.DataFrame(rows).to_csv(out / "index.csv", index=False)
    return len(rows)
