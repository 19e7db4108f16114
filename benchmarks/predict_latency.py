"""Time one plain forward, predict + Grad-CAM, and the whole in-process request (decode to overlay), in fp32 and
bf16/channels_last, and report how far bf16 outputs are from fp32.

Usage: python benchmarks/predict_latency.py [--model ID] [--n 30]
Prints medians in ms and the ratios to a plain fp32 forward. Targets (issue 7): predict + Grad-CAM <= 1.3x a plain
forward of the same model; the whole request <= 2.5x. Timing lives here, not in pytest.
"""

from __future__ import annotations

import argparse
import csv
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medimg_demo.manifest import resolve_data_dir  # noqa: E402
from medimg_demo.imaging.decode import read_file  # noqa: E402
from medimg_demo.explain.overlay import overlay  # noqa: E402
from medimg_demo.predict import Predictor, bf16_supported  # noqa: E402
from medimg_demo.models.preprocess import model_pixels, to_tensor  # noqa: E402
from medimg_demo.models.registry import get_model  # noqa: E402


def median_ms(fn, n: int) -> float:  # noqa: ANN001
    for _ in range(3):
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
    cfg = get_model(args.model)
    folder = resolve_data_dir(args.data, cfg.task)
    with open(folder / "manifest.csv", newline="") as fh:
        paths = [folder / r["image"] for r in csv.DictReader(fh) if r["split"] == "test"][:20]
    path = paths[0]
    study = read_file(path)
    print(f"model {cfg.id}, input {cfg.input.size}, image {study.width}x{study.height}, torch threads {torch.get_num_threads()}, "
          f"bf16 supported: {bf16_supported()}")
    base = None
    results = {}
    for precision in ("fp32", "bf16"):
        pred = Predictor(cfg, precision=precision)
        x = to_tensor(model_pixels(study, cfg.input), cfg.input)
        if precision == "bf16":
            x = x.contiguous(memory_format=torch.channels_last)

        def forward() -> None:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                pred.model(x)

        def predict_cam() -> None:
            pred.run(study, explain=True)

        def request() -> None:
            s = read_file(path)
            p = pred.run(s, explain=True)
            overlay(p.image, p.heatmap, 0.45)

        f, c, r = median_ms(forward, args.n), median_ms(predict_cam, args.n), median_ms(request, args.n)
        base = base or f
        results[precision] = [pred.run(read_file(p), explain=True) for p in paths]
        print(f"[{precision}] plain forward              {f:7.1f} ms  {f / base:.2f}x of fp32 forward")
        print(f"[{precision}] predict + Grad-CAM         {c:7.1f} ms  {c / f:.2f}x of its forward, {c / base:.2f}x of fp32 forward")
        print(f"[{precision}] request (decode..overlay)  {r:7.1f} ms  {r / f:.2f}x of its forward, {r / base:.2f}x of fp32 forward")
    dp = max(abs(a.type_probs[k] - b.type_probs[k]) for a, b in zip(results["fp32"], results["bf16"]) for k in a.type_probs)
    same = np.mean([a.type_label == b.type_label for a, b in zip(results["fp32"], results["bf16"])])
    corr = np.mean([np.corrcoef(a.heatmap.ravel(), b.heatmap.ravel())[0, 1] for a, b in zip(results["fp32"], results["bf16"])])
    print(f"bf16 vs fp32 on {len(paths)} test images: max |prob diff| {dp:.4f}, same label {same:.2f}, mean heatmap correlation {corr:.3f}")


if __name__ == "__main__":
    main()
