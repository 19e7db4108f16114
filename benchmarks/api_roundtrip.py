"""App start to first answer, and the Gradio API round trip vs the same request in-process.

Usage: python benchmarks/api_roundtrip.py [--n 20]
Prints: start-to-first-answer seconds; median in-process request (decode .. overlay) and median API round trip
(gradio_client, loopback), and their difference. Targets (issue 7): start < 10 s; API <= in-process + 60 ms.
"""

from __future__ import annotations

import argparse
import csv
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import running_app  # noqa: E402

from medimg_demo import service  # noqa: E402
from medimg_demo.data import data_root  # noqa: E402


def lung_image() -> str:
    folder = data_root() / "lung_ct"
    with open(folder / "manifest.csv", newline="") as fh:
        return str(folder / next(r["image"] for r in csv.DictReader(fh) if r["split"] == "test"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from gradio_client import Client, handle_file

    img = lung_image()
    with running_app() as (url, started):
        t0 = time.perf_counter()
        client = Client(url, verbose=False)
        client.predict(handle_file(img), None, api_name="/predict")
        first = started + (time.perf_counter() - t0)
        api = []
        for _ in range(args.n):
            t = time.perf_counter()
            client.predict(handle_file(img), None, api_name="/predict")
            api.append((time.perf_counter() - t) * 1000)
    service.analyse(img)  # warm-up
    local = []
    for _ in range(args.n):
        t = time.perf_counter()
        a = service.analyse(img)
        service.summary_json(a)
        local.append((time.perf_counter() - t) * 1000)
    api_ms, local_ms = statistics.median(api), statistics.median(local)
    print(f"app start to first answer   {first:6.2f} s   (target < 10 s)")
    print(f"in-process request (median) {local_ms:6.1f} ms")
    print(f"API round trip (median)     {api_ms:6.1f} ms")
    print(f"API overhead                {api_ms - local_ms:6.1f} ms   (target <= 60 ms)")


if __name__ == "__main__":
    main()
