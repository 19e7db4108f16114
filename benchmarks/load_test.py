"""12 concurrent clinicians: start the app on 127.0.0.1 and drive it with gradio_client for a bounded number of requests.

Usage: python benchmarks/load_test.py [--clients 12] [--requests 5]
Reports throughput, p50/p95 latency and errors; target: zero errors and p95 < 12 x the single-request latency.
Traffic goes to the loopback address only and stops by itself.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import running_app  # noqa: E402
from api_roundtrip import lung_image  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=12)
    ap.add_argument("--requests", type=int, default=5, help="requests per client")
    args = ap.parse_args()
    import httpx
    from gradio_client import Client, handle_file

    img = lung_image()
    with running_app() as (url, _):
        def analyse(client: Client, http: httpx.Client) -> None:
            """One /predict and its two pictures; download_files=False, as gradio_client's own downloads leave an
            empty folder per file in the system temp folder."""
            out = client.predict(handle_file(img), None, api_name="/predict")
            for picture in out[4:6]:
                http.get(picture["url"]).raise_for_status()

        warm, warm_http = Client(url, verbose=False, download_files=False), httpx.Client(timeout=60)
        analyse(warm, warm_http)
        single = []
        for _ in range(5):
            t = time.perf_counter()
            analyse(warm, warm_http)
            single.append(time.perf_counter() - t)
        single_s = statistics.median(single)
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()

        def clinician() -> None:
            client, http = Client(url, verbose=False, download_files=False), httpx.Client(timeout=60)
            for _ in range(args.requests):
                t = time.perf_counter()
                try:
                    analyse(client, http)
                    with lock:
                        latencies.append(time.perf_counter() - t)
                except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                    with lock:
                        errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")

        threads = [threading.Thread(target=clinician) for _ in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    lat = sorted(latencies)
    p50 = lat[len(lat) // 2] if lat else float("nan")
    p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))] if lat else float("nan")
    total = args.clients * args.requests
    print(f"clients {args.clients} x {args.requests} requests = {total}; wall {wall:.1f} s")
    print(f"throughput {len(lat) / wall:.2f} req/s; errors {len(errors)} {sorted(set(errors))}")
    print(f"single request {single_s * 1000:.0f} ms; p50 {p50 * 1000:.0f} ms; p95 {p95 * 1000:.0f} ms; "
          f"p95 / single = {p95 / single_s:.1f} (target < 12)")


if __name__ == "__main__":
    main()
