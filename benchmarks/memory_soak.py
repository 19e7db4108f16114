"""Memory over 500 predictions with heatmaps (in-process, the shared predictor): RSS must stay flat.

Usage: python benchmarks/memory_soak.py [--n 500]
Prints RSS after warm-up, every 100 predictions, and the growth; hooks left attached would show here.
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_roundtrip import lung_image  # noqa: E402

from medimg_demo.web import analysis as service  # noqa: E402
from medimg_demo.predict import get_predictor  # noqa: E402


def rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    args = ap.parse_args()
    img = lung_image()
    for _ in range(20):
        service.analyse(img)
    gc.collect()
    start = rss_mb()
    print(f"after warm-up: {start:.1f} MB")
    for i in range(1, args.n + 1):
        service.analyse(img)
        if i % 100 == 0:
            gc.collect()
            print(f"after {i:4d} predictions: {rss_mb():.1f} MB")
    layer = get_predictor().model.layer(get_predictor().cfg.target_layer)
    print(f"growth: {rss_mb() - start:+.1f} MB; hooks left on the target layer: "
          f"{len(layer._forward_hooks) + len(layer._backward_hooks)}")


if __name__ == "__main__":
    main()
