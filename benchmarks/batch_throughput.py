"""Batch throughput, side by side in one run: the plain single-process loop (decode, gate, predict one image at a
time, write), the batch pipeline in-process without Ray, Ray local end to end (Ray start included), and the
ONNX Runtime batch-32 forward alone; images/s and the ratio end-to-end / forward (issue 15 target: >= 0.5).

    python benchmarks/batch_throughput.py DIR --model lung_ct.tf_efficientnet_lite0_v2

DIR: a folder of images (e.g. a few hundred test-split images copied to /tmp). Outputs go to a temporary folder.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medimg_demo.batch.pipeline import list_files, run_batch  # noqa: E402
from medimg_demo.imaging.decode import read_file  # noqa: E402
from medimg_demo.models.export import OnnxForward  # noqa: E402
from medimg_demo.models.registry import get_model  # noqa: E402
from medimg_demo.predict import predict_study  # noqa: E402


def plain_loop(files: list[Path], model: str, out: Path) -> float:
    start = time.perf_counter()
    rows = [predict_study(read_file(p), model, explain=False).to_json() for p in files]
    pd.DataFrame([{"status": r["status"], "image_sha256": r["image_sha256"], "json": str(r)} for r in rows]).to_parquet(out)
    return len(files) / (time.perf_counter() - start)


def onnx_forward(model: str, batch: int = 32, repeats: int = 8) -> float:
    cfg = get_model(model)
    fwd = OnnxForward(cfg)
    x = np.random.default_rng(0).normal(0, 1, (batch, 3, *cfg.input.size)).astype(np.float32)
    fwd(x)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fwd(x)
    return batch * repeats / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("input", type=Path)
    p.add_argument("--model", default="lung_ct.tf_efficientnet_lite0_v2")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--plain-limit", type=int, default=100, help="images for the (slow) plain loop")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    files = [f[0] for f in list_files(args.input)]
    tmp = Path(tempfile.mkdtemp(prefix="batch_bench_"))
    fwd = onnx_forward(args.model)
    plain = plain_loop(files[: args.plain_limit], args.model, tmp / "plain.parquet")
    local = run_batch(args.input, args.model, tmp / "local.parquet", use_ray=False)
    ray_run = run_batch(args.input, args.model, tmp / "ray.parquet", concurrency=args.concurrency)
    again = run_batch(args.input, args.model, tmp / "ray.parquet", concurrency=args.concurrency)
    rate = lambda s: s.done / s.seconds  # noqa: E731
    print(f"{len(files)} files, model {args.model}")
    print(f"{'plain loop (torch, 1 image at a time)':45s} {plain:8.1f} img/s  ({min(len(files), args.plain_limit)} images)")
    print(f"{'batch in-process, no Ray (ONNX, batch 32)':45s} {rate(local):8.1f} img/s  {local.line()}")
    print(f"{f'Ray local end to end, {args.concurrency} actor(s), incl. start':45s} {rate(ray_run):8.1f} img/s  "
          f"{ray_run.line()}")
    print(f"{'ONNX Runtime batch-32 forward alone':45s} {fwd:8.1f} img/s")
    print(f"ratio Ray end-to-end / ONNX forward: {rate(ray_run) / fwd:.2f} (target >= 0.5); "
          f"no-Ray batch / forward: {rate(local) / fwd:.2f}; Ray / plain loop: {rate(ray_run) / plain:.1f}x")
    print(f"rerun (all skipped): {again.seconds:.2f} s vs first run {ray_run.seconds:.1f} s "
          f"({again.seconds / ray_run.seconds:.1%})")


if __name__ == "__main__":
    main()
