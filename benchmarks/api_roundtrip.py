"""App start to first answer, and the Gradio API round trip vs the same request in-process.

Usage: python benchmarks/api_roundtrip.py [--n 40]

Two clients drive the same ``/predict`` endpoint of the app started on 127.0.0.1, one request at a time, each
request uploading the scan and fetching both output images, as a clinician's client would:

* ``http``: Gradio's documented HTTP API (``POST /gradio_api/upload``, ``POST /gradio_api/call/predict``, the
  result's event stream, then GET of the two PNGs) with one keep-alive ``httpx`` connection;
* ``gradio_client``: ``Client.predict`` with ``download_files=False``, then GET of the two PNGs. This client
  polls its message queue with ``time.sleep(0.05)`` (gradio_client/utils.py), which alone adds tens of ms.

Prints: start-to-first-answer seconds; the median in-process request (``web.analysis.analyse``: decode .. overlay;
the PNG encoding of the two output images is counted as API cost); the median round trip of each client and its
difference from the in-process request. Targets (issue 7): start < 10 s; API <= in-process + 60 ms.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import running_app  # noqa: E402

from medimg_demo.web import analysis as service  # noqa: E402
from medimg_demo.paths import data_root  # noqa: E402
from medimg_demo.models.registry import get_model  # noqa: E402


def lung_image() -> str:
    folder = data_root() / "lung_ct"
    with open(folder / "manifest.csv", newline="") as fh:
        return str(folder / next(r["image"] for r in csv.DictReader(fh) if r["split"] == "test"))


def http_predict(client, image: str, model_id: str) -> list:  # noqa: ANN001
    """One /predict call through Gradio's HTTP API, images included; returns the output list."""
    with open(image, "rb") as fh:
        r = client.post("/gradio_api/upload", files={"files": (Path(image).name, fh, "image/png")})
    r.raise_for_status()
    data = [{"path": r.json()[0], "meta": {"_type": "gradio.FileData"}}, model_id, 0.45, 1, "File default", None, None]
    r = client.post("/gradio_api/call/predict", json={"data": data})
    r.raise_for_status()
    event = None
    with client.stream("GET", f"/gradio_api/call/predict/{r.json()['event_id']}") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "complete":
                out = json.loads(line[5:])
                break
            elif line.startswith("data:") and event == "error":
                raise RuntimeError(f"/predict failed: {line[5:]}")
        else:
            raise RuntimeError("/predict: the event stream ended without a result")
    for image_out in out[4:6]:
        client.get(image_out["url"]).raise_for_status()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import httpx
    from gradio_client import Client, handle_file

    img = lung_image()
    model_id = get_model(None).id
    with running_app() as (url, started):
        t0 = time.perf_counter()
        gc = Client(url, verbose=False, download_files=False)
        gc.predict(handle_file(img), None, api_name="/predict")
        first = started + (time.perf_counter() - t0)
        hc = httpx.Client(base_url=url.rstrip("/"), timeout=60)
        for _ in range(3):
            http_predict(hc, img, model_id)
        http_ms, client_ms = [], []
        for _ in range(args.n):  # interleaved, so both clients see the same server state
            t = time.perf_counter()
            http_predict(hc, img, model_id)
            http_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            out = gc.predict(handle_file(img), None, api_name="/predict")
            for image_out in out[4:6]:
                hc.get(image_out["url"]).raise_for_status()
            client_ms.append((time.perf_counter() - t) * 1000)
    for _ in range(3):
        service.analyse(img)  # warm-up
    local = []
    for _ in range(args.n):
        t = time.perf_counter()
        a = service.analyse(img)
        service.summary_json(a)
        local.append((time.perf_counter() - t) * 1000)
    local_ms = statistics.median(local)
    print(f"app start to first answer        {first:6.2f} s   (target < 10 s)")
    print(f"in-process request (median)      {local_ms:6.1f} ms")
    for name, values in (("HTTP API", http_ms), ("gradio_client", client_ms)):
        med = statistics.median(values)
        print(f"{name + ' round trip (median)':32s} {med:6.1f} ms   overhead {med - local_ms:6.1f} ms   (target <= 60 ms)")


if __name__ == "__main__":
    main()
