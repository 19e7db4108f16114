"""What a reader's share of the raw-upload disk (``web.upload_share``) bounds, measured side by side in one run.

The app is started twice on loopback, with three logins and a fresh upload folder each time: without the share
(``MEDIMG_UPLOAD_MB_PER_READER=0``, as before) and with it (the default, or ``--mb``). Each time one login sends
``--size-mb`` files (the largest allowed by default) from ``--threads`` threads for ``--seconds``, using none of
them (raw uploads then stay until their life, ``MEDIMG_RAW_UPLOAD_TTL_S``, is over); the upload folder's size is
sampled every half second. Then another login uploads a 1 MB file.

Usage: python benchmarks/upload_share.py [--seconds 30] [--threads 2] [--size-mb 100] [--mb 2048]
Prints, for each way: uploads accepted and refused, the upload folder's peak size, the other login's answer and
time; then the ratio of the peaks. Timing lives here, not in pytest.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import running_app  # noqa: E402

log = logging.getLogger("upload_share")
LOGINS = "bob02:pw-bob-2,alice01:pw-alice-1"


def folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass  # removed meanwhile
    return total


def client(url: str, user: str, password: str) -> httpx.Client:
    c = httpx.Client(base_url=url, timeout=120)
    c.post("/login", data={"username": user, "password": password}).raise_for_status()
    return c


def one_way(mb: str, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        uploads = Path(tmp) / "gradio"
        env = {"MEDIMG_AUTH": LOGINS, "MEDIMG_STATE_DIR": str(Path(tmp) / "state"), "GRADIO_TEMP_DIR": str(uploads),
               "MEDIMG_UPLOAD_MB_PER_READER": mb}
        with running_app(env) as (url, _):
            body = os.urandom(int(args.size_mb * 1e6) - 4096)
            counts, peak, stop = {"accepted": 0, "refused": 0}, [0], threading.Event()
            lock = threading.Lock()

            def sender() -> None:
                c = client(url, "bob02", "pw-bob-2")
                while not stop.is_set():
                    r = c.post("/gradio_api/upload", files={"files": ("scan.dcm", body)})
                    with lock:
                        counts["accepted" if r.status_code == 200 else "refused"] += 1
                    if r.status_code != 200:
                        time.sleep(0.2)

            def sampler() -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], folder_bytes(uploads))
                    time.sleep(0.5)

            threads = [threading.Thread(target=sender) for _ in range(args.threads)] + [threading.Thread(target=sampler)]
            for t in threads:
                t.start()
            time.sleep(args.seconds)
            stop.set()
            for t in threads:
                t.join()
            peak[0] = max(peak[0], folder_bytes(uploads))
            alice = client(url, "alice01", "pw-alice-1")
            t0 = time.perf_counter()
            status = alice.post("/gradio_api/upload", files={"files": ("scan.dcm", os.urandom(10**6))}).status_code
            return {**counts, "peak_mb": peak[0] / 1e6, "other_status": status,
                    "other_s": time.perf_counter() - t0}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size-mb", type=float, default=100)
    ap.add_argument("--mb", default="2048", help="the share with the limit (MEDIMG_UPLOAD_MB_PER_READER)")
    args = ap.parse_args()
    rows = {"without the share": one_way("0", args), f"with {args.mb} MB per reader": one_way(args.mb, args)}
    for name, r in rows.items():
        log.info("%-26s bob: %3d uploads accepted, %3d refused; upload folder peak %7.0f MB; alice's upload: HTTP %d "
                 "in %.2f s", name, r["accepted"], r["refused"], r["peak_mb"], r["other_status"], r["other_s"])
    before, after = rows.values()
    log.info("peak disk of one login's raw uploads: %.0f MB -> %.0f MB (%.1fx less)", before["peak_mb"],
             after["peak_mb"], before["peak_mb"] / max(after["peak_mb"], 1e-9))


if __name__ == "__main__":
    main()
