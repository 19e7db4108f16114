"""Time one plain forward, predict + Grad-CAM, and the whole in-process request (decode to overlay).

Usage: python benchmarks/predict_latency.py [--model ID] [--n 30] [--data ../shared/data]
Prints medians in ms and the ratios to a plain forward. Timing lives here, not in pytest.
"""

from __future__ import annotations

import argparse
import csv
import logging
import statistics
import time
from pathlib import Path

import torch

from medimg_demo.data import resolve_data_dir
from medimg_demo.io import read_file
from medimg_demo.overlay import overlay
from medimg_demo.predict import get_predictor
from medimg_demo.preprocess import to_tensor


def median_ms(fn, n: int) -> float:  # noqa: ANN001
    fn()  # warm-up
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    pred = get_predictor(args.model)
    folder = resolve_data_dir(args.data, pred.cfg.task)
    with open(folder / "manifest.csv", newline="") as fh:
        path = next(folder / r["image"] for r in csv.DictReader(fh) if r["split"] == "test")
    study = read_file(path)
    x = to_tensor(study.pixels, pred.cfg.input)

    def forward() -> None:
        with torch.inference_mode():
            pred.model(x)

    def predict_cam() -> None:
        pred.run(study, explain=True)

    def request() -> None:
        s = read_file(path)
        p = pred.run(s, explain=True)
        overlay(p.image, p.heatmap, 0.45)

    f = median_ms(forward, args.n)
    c = median_ms(predict_cam, args.n)
    r = median_ms(request, args.n)
    print(f"model {pred.cfg.id}, input {pred.cfg.input.size}, image {study.width}x{study.height}, torch threads {torch.get_num_threads()}")
    print(f"plain forward            {f:7.1f} ms  1.00x")
    print(f"predict + Grad-CAM       {c:7.1f} ms  {c / f:.2f}x")
    print(f"request (decode..overlay) {r:7.1f} ms  {r / f:.2f}x")


if __name__ == "__main__":
    main()
