"""The running app's memory and upload folder over repeated hostile and valid uploads: both must level off.

Usage: python benchmarks/server_memory_soak.py [--rounds 30] [--junk-mb 50] [--view-budget-mb 64]

Starts the app on 127.0.0.1 (its own state and upload folders in a temporary folder) and sends, in each round,
through gradio_client's ``/predict`` as a client would:

* ``junk``: random bytes named ``.png`` (``--junk-mb``, under the upload limit), which must be refused;
* ``forged``: a valid PNG header claiming 60000 x 60000 pixels with almost no data, which must be refused;
* ``large``: a lung CT test slice enlarged to 3000 px, a valid scan whose analysed view (its pixels kept for
  redraws) is the largest the app keeps;
* ``scan``: the same slice at its own size.

The views of all pages share one budget (``MEDIMG_VIEW_BUDGET_MB``, set small here so that it fills within a few
rounds), so memory may rise over the first rounds and must then stay flat. Prints the server's RSS (``VmRSS`` of
its process) after warm-up, after every fifth round and at the end, the growth over the second half of the rounds
(target: under 50 MB, i.e. no leak of an upload's bytes per round), the peak (``VmHWM``), how many files and
bytes the upload folder holds at the end, and whether any of them is a copy of an uploaded file (raw uploads must
not outlive their request).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import running_app_process  # noqa: E402
from api_roundtrip import lung_image  # noqa: E402

log = logging.getLogger("server_memory_soak")
LEAK_BUDGET_MB = 50.0


def status_mb(pid: int, field: str) -> float:
    """A ``/proc/<pid>/status`` memory field (``VmRSS``, ``VmHWM``) in MB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/{pid}/status (this benchmark needs Linux)")


def forged_png() -> bytes:
    """A valid PNG header claiming 60000 x 60000 pixels, with almost no pixel data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    head = chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + head + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")


def make_inputs(folder: Path, junk_mb: float) -> dict[str, tuple[Path, bool]]:
    """Each input's file and whether the app must accept it."""
    from PIL import Image

    scan = Path(lung_image())
    large = folder / "large.png"
    with Image.open(scan) as im:
        w, h = im.size
        im.convert("L").resize((3000, round(3000 * h / w)), Image.Resampling.BILINEAR).save(large)
    junk = folder / "junk.png"
    junk.write_bytes(os.urandom(int(junk_mb * 1e6)))
    forged = folder / "forged.png"
    forged.write_bytes(forged_png())
    small = folder / "scan.png"
    small.write_bytes(scan.read_bytes())
    return {"junk": (junk, False), "forged": (forged, False), "large": (large, True), "scan": (small, True)}


def folder_usage(folder: Path, sent: list[Path]) -> str:
    """What the upload folder holds: files, bytes, Gradio's empty ``tmp*`` upload files, and copies of any input."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in sent}
    raw = sum(hashlib.sha256(p.read_bytes()).hexdigest() in digests for p in files)
    empty = sum(p.stat().st_size == 0 and p.name.startswith("tmp") for p in files)
    return (f"{len(files)} files, {sum(p.stat().st_size for p in files) / 1e6:.1f} MB; {empty} of them Gradio's empty "
            f"tmp* upload files (removed after MEDIMG_RAW_UPLOAD_TTL_S); copies of an uploaded file: {raw} (target 0)")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--junk-mb", type=float, default=50.0, help="size of the random-bytes upload (default 50 MB)")
    ap.add_argument("--view-budget-mb", type=float, default=64.0, help="MEDIMG_VIEW_BUDGET_MB for the app")
    args = ap.parse_args()
    import httpx
    from gradio_client import Client, handle_file

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        root = Path(tmp)
        uploads, state, inputs_dir = root / "uploads", root / "state", root / "inputs"
        for d in (uploads, state, inputs_dir):
            d.mkdir()
        inputs = make_inputs(inputs_dir, args.junk_mb)
        env = {"MEDIMG_STATE_DIR": str(state), "GRADIO_TEMP_DIR": str(uploads),
               "MEDIMG_VIEW_BUDGET_MB": str(args.view_budget_mb)}
        with running_app_process(env) as (url, _, pid):
            # download_files=False: gradio_client leaves an empty folder in the system temp folder per download;
            # the two pictures are fetched here instead, as a browser would
            client = Client(url, verbose=False, download_files=False)
            pictures = httpx.Client(timeout=60)

            def analyse(path: Path) -> None:
                out = client.predict(handle_file(str(path)), None, api_name="/predict")
                for picture in out[4:6]:
                    pictures.get(picture["url"]).raise_for_status()

            analyse(inputs["scan"][0])  # warm-up
            rss = [status_mb(pid, "VmRSS")]
            log.info("after warm-up: RSS %.0f MB", rss[0])
            wrong: list[str] = []
            t0 = time.perf_counter()
            for i in range(1, args.rounds + 1):
                for name, (path, accept) in inputs.items():
                    try:
                        analyse(path)
                        ok = True
                    except Exception as exc:  # noqa: BLE001 - a refusal is an exception here; checked below
                        ok, reason = False, f"{type(exc).__name__}: {str(exc)[:100]}"
                    if ok != accept:
                        wrong.append(f"round {i} {name}: " + ("accepted" if ok else f"refused ({reason})"))
                rss.append(status_mb(pid, "VmRSS"))
                if i % 5 == 0 or i == args.rounds:
                    log.info("round %d: RSS %.0f MB (%.0f s)", i, rss[-1], time.perf_counter() - t0)
            peak = status_mb(pid, "VmHWM")
            left = folder_usage(uploads, [p for p, _ in inputs.values()])
        half = args.rounds // 2
        growth = rss[-1] - rss[half]
        log.info("RSS: warm-up %.0f MB, round %d %.0f MB, end %.0f MB, peak %.0f MB", rss[0], half, rss[half],
                 rss[-1], peak)
        log.info("growth over rounds %d-%d: %+.1f MB (target < %.0f MB); over all rounds %+.1f MB", half,
                 args.rounds, growth, LEAK_BUDGET_MB, rss[-1] - rss[0])
        log.info("upload folder at the end: %s; sent %d uploads, %.0f MB", left, len(inputs) * args.rounds,
                 args.rounds * sum(p.stat().st_size for p, _ in inputs.values()) / 1e6)
        log.info("answers as expected: %s", "all" if not wrong else f"{len(wrong)} not: {wrong[:4]}")
        log.info("verdict: %s", "flat" if growth < LEAK_BUDGET_MB and not wrong else "CHECK")


if __name__ == "__main__":
    main()
