"""The framing probe: a call that reads the background changes when only the background does; one that reads the
body does not."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from medimg_demo.eval.framing import GREY, framing_probe, lift_background
from medimg_demo.models.calibration import Calibration

LABELS = ["cancer", "normal"]


def _images(n: int = 6, side: int = 64) -> np.ndarray:
    """Elliptic bodies (grey 0.6, brighter for odd images) on black; the last one all white (no body to find)."""
    yy, xx = np.mgrid[:side, :side]
    body = ((xx - side / 2) / 26) ** 2 + ((yy - side / 2) / 20) ** 2 <= 1
    out = np.zeros((n, side, side), dtype=np.float16)
    for i in range(n - 1):
        out[i][body] = 0.6 if i % 2 == 0 else 0.8
    out[-1] = 0.9
    return out


class _Split(torch.utils.data.Dataset):
    """What the probe reads of a ManifestDataset: images, type targets, the frame, items as (x, targets)."""

    def __init__(self, images: np.ndarray, y: list[int]) -> None:
        self.images = images
        self.targets = {"type": torch.tensor(y)}
        self.frame = pd.DataFrame({"image": [f"i{i}.png" for i in range(len(y))]})

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict]:
        return torch.from_numpy(self.images[i].astype(np.float32))[None], {}


class _Reader(torch.nn.Module):
    """Calls 'normal' when the corner (background) is light, or, reading the body, when the centre is bright."""

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        v = x[:, 0, 0, 0] if self.where == "corner" else x[:, 0, 32, 32] - 0.7
        return {"type": torch.stack([torch.zeros_like(v), 20 * v], dim=1)}


def test_lift_background_changes_only_the_background_of_images_with_a_body() -> None:
    images = _images()
    lifted, found = lift_background(images)
    assert found.tolist() == [True] * 5 + [False]
    assert np.array_equal(lifted[-1], images[-1])  # no body: left alone
    for a, b in zip(images[:-1], lifted[:-1]):
        assert abs(float(b[0, 0]) - GREY) < 1e-3  # the corner is background
        assert np.array_equal(a[32, 20:44], b[32, 20:44])  # the body is not touched
    assert float(images[0, 0, 0]) == 0.0  # the input is not modified


def test_a_model_that_reads_the_frame_is_caught_and_one_that_reads_the_body_is_not() -> None:
    images = _images()
    y = [0, 1, 0, 1, 0, 0]  # odd bodies are bright: 'normal' for the body reader
    cfg = SimpleNamespace(type_labels=LABELS, calibration=lambda head: Calibration(temperature=1.0))
    split = _Split(images, y)
    by_frame = framing_probe(_Reader("corner"), cfg, split, np.zeros(6, dtype=int), "normal", n_boot=50)
    rows = by_frame.summary.set_index(["metric", "class"])["value"]
    # correct calls with a body found: images 0, 2, 4 (cancer, called cancer); all turn normal on a grey background
    assert rows[("explain_frame_call_changed", "")] == 1.0 and rows[("explain_frame_tumor_to_normal", "")] == 1.0
    assert by_frame.per_case["frame_call"].tolist()[:5] == ["normal"] * 5 and pd.isna(by_frame.per_case["frame_call"].iloc[5])
    calls = np.array([0, 1, 0, 1, 0, 0])
    by_body = framing_probe(_Reader("centre"), cfg, split, calls, "normal", n_boot=50)
    rows = by_body.summary.set_index(["metric", "class"])["value"]
    assert rows[("explain_frame_call_changed", "")] == 0.0 and rows[("explain_frame_call_changed", "normal")] == 0.0
    assert rows[("explain_frame_tumor_to_normal", "")] == 0.0
    assert by_body.per_case["frame_call_changed"].isna().tolist() == [False] * 5 + [True]  # no body: not probed
