"""What the lesion head adds to predict time: the same model (same weights) with and without its lesion head,
``Predictor.run`` with Grad-CAM and lesion measurement, timed in alternation on the same test images.

Usage: python benchmarks/lesion_overhead.py --model ID [--n 40]
Prints medians in ms and the ratio with/without. Target (issue 14): at most 1.15x. Timing lives here, not in pytest.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medimg_demo.imaging.decode import read_file  # noqa: E402
from medimg_demo.manifest import resolve_data_dir  # noqa: E402
from medimg_demo.models.network import TumorNet, load_model  # noqa: E402
from medimg_demo.models.registry import get_model  # noqa: E402
from medimg_demo.predict import Predictor  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="a model with a lesion head (breast_us or brain_mri)")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = get_model(args.model)
    if cfg.lesion is None:
        raise SystemExit(f"{cfg.id} has no lesion head")
    with_head = load_model(cfg)
    plain = TumorNet(cfg.arch, cfg.heads, pretrained="none")
    state = {k: v for k, v in with_head.state_dict().items() if not k.startswith("lesion.")}
    plain.load_state_dict(state, strict=True)
    plain.eval()
    runs = {"with lesion head": Predictor(cfg, model=with_head),
            "without": Predictor(dataclasses.replace(cfg, lesion=None), model=plain)}
    folder = resolve_data_dir(args.data, cfg.task)
    with open(folder / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test" and r["label"] not in ("normal", "no_tumor")]
    studies = [read_file(folder / r["image"]) for r in rows[:20]]
    times: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(args.n + 3):  # alternate, so both see the same machine state; the first 3 rounds warm up
        for name, pred in runs.items():
            t = time.perf_counter()
            pred.run(studies[i % len(studies)], explain=True, gate=False)
            if i >= 3:
                times[name].append((time.perf_counter() - t) * 1000)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"model {cfg.id}, layer {cfg.target_layer}, torch threads {torch.get_num_threads()}, {args.n} runs each")
    for k, v in med.items():
        print(f"  predict + Grad-CAM {k:18s} median {v:7.1f} ms")
    print(f"  ratio with / without: {med['with lesion head'] / med['without']:.3f} (target <= 1.15)")


if __name__ == "__main__":
    main()
