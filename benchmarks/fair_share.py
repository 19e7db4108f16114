"""What one job per reader (``web.fair_share``) buys another reader, measured side by side in one run.

One reader sends ``--jobs`` analyses at once of a scan that is slow to decode within every limit (a 4096x4096 JPEG
2000 DICOM by default; ``--slow prog`` is an 8000x8000 JPEG of 64 scans in a DICOM, about 13 s each); while
they are sent, another reader analyses a lung CT PNG of the data set. Both through ``handlers.predict`` as the app
calls it, with uploads decoding in the decode server's children (``MEDIMG_DECODE_WORKERS`` slots). Measured in
alternation, ``--n`` times each: with the limit (the app's default, one job per reader) and without it (as before).
Gradio's queue is not in this run: in the app, its places per event were held by the same calls too (a live run:
another reader's analysis took 41 s behind six slow ones, 0.2-0.3 s with the limit).

Usage: python benchmarks/fair_share.py [--n 3] [--jobs 6] [--slow j2k|prog]
Prints the other reader's median and worst time for each way and their ratio, and how many of the first reader's
analyses ran and how many were refused at once. Timing lives here, not in pytest.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from medimg_demo.imaging import isolated  # noqa: E402
from medimg_demo.imaging.jail_warm import dicom_of  # noqa: E402
from medimg_demo.manifest import resolve_data_dir  # noqa: E402
from medimg_demo.web import fair_share, handlers  # noqa: E402


def slow_scan(kind: str) -> bytes:
    from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit

    if kind == "prog":
        from decode_isolation import _many_scans

        return dicom_of(np.zeros((8000, 8000), np.uint8), JPEGBaseline8Bit, _many_scans(8000, 64))
    y, x = np.mgrid[:4096, :4096]
    return dicom_of(((x * 7 + y * 3) % 256).astype(np.uint8), JPEG2000Lossless)


def one_round(slow: Path, lung: Path, jobs: int) -> tuple[float, int, int]:
    """(the other reader's seconds, the first reader's analyses that ran, those refused at once)."""
    ran, refused, lock = [0], [0], threading.Lock()

    def first_reader(i: int) -> None:
        try:
            handlers.predict(str(slow), None, 0.45, request=SimpleNamespace(username="bob02", session_hash=f"tab{i}"))
            key = ran
        except gr.Error:
            key = refused
        with lock:
            key[0] += 1

    threads = [threading.Thread(target=first_reader, args=(i,)) for i in range(jobs)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # the first reader's analyses are under way
    t0 = time.perf_counter()
    handlers.predict(str(lung), None, 0.45, request=SimpleNamespace(username="alice01", session_hash="page"))
    took = time.perf_counter() - t0
    for t in threads:
        t.join()
    return took, ran[0], refused[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3, help="rounds of each way (default 3)")
    ap.add_argument("--jobs", type=int, default=6, help="analyses the first reader sends at once (default 6)")
    ap.add_argument("--slow", choices=("j2k", "prog"), default="j2k", help="the slow scan (default j2k)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not isolated.enabled():
        print("Isolation is off here (MEDIMG_DECODE_ISOLATION=0, or no fork / Unix sockets).")
        return 2
    isolated.start()
    with tempfile.TemporaryDirectory() as tmp:
        slow = Path(tmp) / "slow.dcm"
        slow.write_bytes(slow_scan(args.slow))
        lung = sorted((resolve_data_dir(None, "lung_ct") / "images").glob("*.png"))[0]
        handlers.predict(str(lung), None, 0.45)  # the model loaded and warm before any timing
        results: dict[str, list[tuple[float, int, int]]] = {"limit": [], "none": []}
        default = fair_share.JOBS_PER_READER
        for _ in range(args.n):
            for way, limit in (("limit", default), ("none", 10**9)):
                fair_share.JOBS_PER_READER = limit
                results[way].append(one_round(slow, lung, args.jobs))
    print(f"first reader: {args.jobs} analyses at once of the slow scan ({args.slow}); "
          f"{isolated.WORKERS} decode slots; {args.n} rounds each way")
    for way, label in (("none", "no limit (before)"), ("limit", "one job per reader")):
        times = [t for t, _, _ in results[way]]
        ran = statistics.median(r for _, r, _ in results[way])
        refused = statistics.median(r for _, _, r in results[way])
        print(f"{label:20} other reader: median {statistics.median(times):6.2f} s, worst {max(times):6.2f} s; "
              f"first reader's analyses run {ran:.0f}, refused at once {refused:.0f}")
    ratio = statistics.median(t for t, _, _ in results["none"]) / statistics.median(t for t, _, _ in results["limit"])
    print(f"the other reader waits {ratio:.1f}x less with the limit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
