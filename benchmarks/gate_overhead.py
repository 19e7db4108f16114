"""What the gate adds to predict + Grad-CAM: the same Predictor with and without its gate, interleaved, on the
same test images (target, issue 13: at most 5%).

Usage: python benchmarks/gate_overhead.py [--model ID] [--n 40]
Prints the median ms of each and their ratio; also the gate's own scoring time. Timing lives here, not in pytest.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medimg_demo.imaging.decode import read_file  # noqa: E402
from medimg_demo.manifest import read_manifest, resolve_data_dir, split_frame  # noqa: E402
from medimg_demo.models.registry import get_model  # noqa: E402
from medimg_demo.predict import Predictor  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=40)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = get_model(args.model)
    if cfg.gate is None:
        print(f"{cfg.id} has no gate; fit one with python -m medimg_demo gate --model {cfg.id}")
        return 2
    folder = resolve_data_dir(None, cfg.task)
    rows = split_frame(read_manifest(folder), "test").head(8)
    studies = [read_file(folder / p) for p in rows["image"]]
    gated = Predictor(cfg)
    plain = Predictor(replace(cfg, gate=None), model=gated.model)
    for p in (gated, plain):  # warm-up
        for s in studies[:3]:
            p.run(s)
    times: dict[str, list[float]] = {"with gate": [], "without gate": []}
    for i in range(args.n):
        s = studies[i % len(studies)]
        order = [("with gate", gated), ("without gate", plain)] if i % 2 else [("without gate", plain), ("with gate", gated)]
        for name, p in order:
            t = time.perf_counter()
            p.run(s, explain=True)
            times[name].append((time.perf_counter() - t) * 1000)
    import torch

    pooled = torch.randn(1, gated.model.backbone.num_features)
    logits = torch.randn(1, len(cfg.type_labels))
    t = time.perf_counter()
    for _ in range(200):
        gated.ood(pooled, logits)
    score_ms = (time.perf_counter() - t) / 200 * 1000
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"model {cfg.id}, gate {cfg.gate.method}, {args.n} interleaved runs of predict + Grad-CAM, torch threads {torch.get_num_threads()}")
    for k, v in med.items():
        print(f"  {k:13s} median {v:7.1f} ms  (min {min(times[k]):.1f}, max {max(times[k]):.1f})")
    print(f"  gate scoring alone: {score_ms:.2f} ms")
    print(f"  ratio with / without gate: {med['with gate'] / med['without gate']:.3f} (target <= 1.05)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
