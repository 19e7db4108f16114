"""Batch throughput, side by side in one run: the plain single-process loop (decode, gate, predict one image at a
time, write), the batch pipeline in-process without Ray, Ray local end to end (Ray start included), and the
ONNX Runtime batch-32 forward alone; images/s and the ratio end-to-end / forward (issue 15 target: >= 0.5).

    python benchmarks/make_mixed_folder.py /tmp/mixed1000
    python benchmarks/batch_throughput.py /tmp/mixed1000 --model brain_mri.tf_efficientnet_lite1_v2 --actors 1,2

The forward is timed right before and right after each end-to-end run and the ratio uses their mean, so that a
change in the machine's load during the run moves both sides of a ratio alike. Outputs go to a temporary folder.
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
    p.add_argument("--actors", default="1", help="Ray actor counts to compare, e.g. 1,2")
    p.add_argument("--plain-limit", type=int, default=100, help="images for the (slow) plain loop")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    files = [Path(f[0]) for f in list_files(args.input)]
    tmp = Path(tempfile.mkdtemp(prefix="batch_bench_"))
    rate = lambda s: s.done / s.seconds  # noqa: E731
    rows: list[tuple[str, float, float, str]] = []  # name, images/s, forward images/s around it, summary

    def timed(name: str, run) -> float:  # noqa: ANN001
        before = onnx_forward(args.model)
        value, line = run()
        fwd = (before + onnx_forward(args.model)) / 2
        rows.append((name, value, fwd, line))
        return value

    plain = timed("plain loop (torch, 1 image at a time)",
                  lambda: (plain_loop(files[: args.plain_limit], args.model, tmp / "plain.parquet"), ""))
    timed("batch in-process, no Ray (ONNX, batch 32)", lambda: _batch(args, tmp / "local.parquet", rate, use_ray=False))
    first = None
    for n in [int(a) for a in args.actors.split(",")]:
        out = tmp / f"ray{n}.parquet"
        timed(f"Ray local end to end, {n} actor(s), incl. start", lambda: _batch(args, out, rate, concurrency=n))
        if first is None:
            first = out
    again = run_batch(args.input, args.model, first, concurrency=1)
    print(f"{len(files)} files, model {args.model}")
    for name, value, fwd, line in rows:
        print(f"{name:48s} {value:7.1f} img/s | forward around it {fwd:6.1f} img/s | ratio {value / fwd:.2f}  {line}")
    print(f"ratio target (issue 15): Ray end to end / ONNX Runtime batch-32 forward >= 0.5; Ray / plain loop: "
          f"{rows[2][1] / plain:.1f}x")
    print(f"rerun (all skipped): {again.seconds:.2f} s ({again.skipped} skipped) vs first Ray run "
          f"{rows[2][1] and len(files) / rows[2][1]:.1f} s")


def _batch(args: argparse.Namespace, out: Path, rate, **kw) -> tuple[float, str]:  # noqa: ANN001
    s = run_batch(args.input, args.model, out, **kw)
    return rate(s), s.line()


if __name__ == "__main__":
    main()
