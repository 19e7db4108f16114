"""Training writes a loadable, pinned model folder; calibration computes what it claims."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medimg_demo.models.calibrate import fit_temperature
from medimg_demo.models.network import load_model
from medimg_demo.learn.train import TrainConfig, train


def _synthetic_set(root, n_per_class: int = 12):
    """Two classes that differ by a bright square's side (left vs right)."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for split, n in (("train", n_per_class), ("val", 4)):
        for label in ("left", "right"):
            for i in range(n):
                arr = (rng.random((48, 48)) * 60).astype(np.uint8)
                c = 12 if label == "left" else 36
                arr[18:30, c - 6 : c + 6] = 230
                name = f"images/{split}_{label}_{i}.png"
                Image.fromarray(arr).save(root / name)
                rows.append({"image": name, "label": label, "split": split})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)


@pytest.mark.slow
def test_train_smoke_writes_pinned_model(tmp_path) -> None:
    data = tmp_path / "toy"
    _synthetic_set(data)
    cfg = TrainConfig(
        data=str(data), task="toy", model_id="toy.lite0_v0", out_dir=str(tmp_path / "models"),
        pretrained="offline", size=48, epochs=3, warmup_epochs=1, batch_size=8, seed=0,
    )
    mc = train(cfg)
    d = json.loads((mc.folder / "config.json").read_text())
    assert d["heads"] == {"type": ["left", "right"]}
    assert d["weights"]["sha256"] and d["temperature"]["type"] > 0
    assert d["training"]["seed"] == 0 and d["training"]["pretrained"] == "offline"
    log = pd.read_csv(mc.folder / "training_log.csv")
    assert len(log) >= 2 and log["train_loss"].notna().all()
    model = load_model(mc)
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 48, 48))
    assert out["type"].shape == (1, 2)


def test_temperature_scaling_softens_overconfident_logits() -> None:
    torch.manual_seed(0)
    y = torch.randint(0, 3, (300,))
    logits = torch.randn(300, 3)
    logits[torch.arange(300), y] += 1.0  # right most of the time, but not always
    t = fit_temperature(logits * 8, y)  # made 8x overconfident
    assert t > 3.0
