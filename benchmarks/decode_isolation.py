"""What decoding uploads in a child process (``imaging.isolated``) costs and buys, measured side by side in one run.

For each file, in alternation: the decode in-process (``read_bytes``) and in a child of the decode server
(``read_isolated``), each while another thread, standing for every other user of the server, wakes every 5 ms and
records its longest wait. Files: a lung CT PNG of the data set and a 512x512 CT DICOM (typical uploads), a sound
4096x4096 JPEG 2000 DICOM, and an 8000x8000 progressive JPEG whose last scan is repeated to 64 scans (the most the
checks before decoding allow; 7.4 s in the live hostile run), as a plain JPEG (Pillow) and in a DICOM (libjpeg).

Usage: python benchmarks/decode_isolation.py [--n 5]
Prints, per file, the median decode time of each way and their ratio, and the other thread's longest wait of each
way. Also the server process's peak RSS growth (VmHWM) over the isolated runs, then over the in-process runs.
Timing lives here, not in pytest.
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medimg_demo.imaging import isolated, jpeg_markers  # noqa: E402
from medimg_demo.imaging.decode import read_bytes  # noqa: E402
from medimg_demo.imaging.jail_warm import dicom_of  # noqa: E402
from medimg_demo.manifest import resolve_data_dir  # noqa: E402


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as fh:  # "5": the peak RSS (VmHWM) starts again from the current RSS
        fh.write("5")


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmHWM:"))


def _many_scans(side: int, scans: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((side, side), 128, np.uint8)).save(buf, format="JPEG", progressive=True, quality=90)
    data = buf.getvalue()
    last = data[data.rindex(b"\xff\xda"):-2]
    forged = data[:-2] + last * (scans - data.count(b"\xff\xda")) + b"\xff\xd9"
    assert jpeg_markers.refusal(forged) is None, "the forged file must pass the checks before decoding"
    return forged


def files() -> dict[str, bytes]:
    from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit

    lung = sorted((resolve_data_dir(None, "lung_ct") / "images").glob("*.png"))[0].read_bytes()
    y, x = np.mgrid[:512, :512]
    y4, x4 = np.mgrid[:4096, :4096]
    scans = _many_scans(8000, 64)
    return {
        "lung CT PNG (data set)": lung,
        "CT DICOM 512x512": dicom_of(((x + y) % 256).astype(np.uint8), ExplicitVRLittleEndian),
        "JPEG 2000 DICOM 4096x4096": dicom_of(((x4 * 7 + y4 * 3) % 256).astype(np.uint8), JPEG2000Lossless),
        "JPEG 8000x8000, 64 scans": scans,
        "same JPEG in a DICOM": dicom_of(np.zeros((8000, 8000), np.uint8), JPEGBaseline8Bit, scans),
    }


def _timed(decode, data: bytes) -> tuple[float, float]:  # noqa: ANN001
    """(decode seconds, the other thread's longest wait in seconds)."""
    stop, worst = threading.Event(), [0.0]

    def other_user() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(0.005)
            now = time.perf_counter()
            worst[0] = max(worst[0], now - last)
            last = now

    t = threading.Thread(target=other_user)
    t.start()
    time.sleep(0.02)
    t0 = time.perf_counter()
    decode(data)
    took = time.perf_counter() - t0
    stop.set()
    t.join()
    return took, worst[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5, help="runs of each way per file (default 5)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not isolated.enabled():
        print("Isolation is off here (MEDIMG_DECODE_ISOLATION=0, or no fork / Unix sockets).")
        return 2
    isolated.start()
    cases = files()
    _reset_peak_rss()
    rss0 = _peak_rss_mb()
    results: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for name, data in cases.items():  # isolated first, so the in-process peak does not hide the isolated one
        results[name] = {"iso": [_timed(isolated.read_isolated, data) for _ in range(args.n)]}
    rss_iso = _peak_rss_mb()
    _reset_peak_rss()
    for name, data in cases.items():
        results[name]["in"] = [_timed(read_bytes, data) for _ in range(args.n)]
    rss_in = _peak_rss_mb()
    print(f"{'file':30} {'in-process':>11} {'isolated':>9} {'ratio':>6} {'added':>7}   other user's longest wait: "
          "in-process / isolated")
    for name, r in results.items():
        t_in = statistics.median(t for t, _ in r["in"])
        t_iso = statistics.median(t for t, _ in r["iso"])
        w_in, w_iso = max(w for _, w in r["in"]), max(w for _, w in r["iso"])
        print(f"{name:30} {t_in * 1000:9.0f}ms {t_iso * 1000:7.0f}ms {t_iso / t_in:5.2f}x {(t_iso - t_in) * 1000:5.0f}ms   "
              f"{w_in * 1000:7.0f} ms / {w_iso * 1000:4.0f} ms")
    print(f"server peak RSS over the run's start ({rss0:.0f} MB): +{rss_iso - rss0:.0f} MB with the isolated decodes, "
          f"+{rss_in - rss0:.0f} MB with the in-process ones")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
