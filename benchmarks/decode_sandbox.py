"""What confining each decode child with Landlock (``imaging.sandbox``) costs, measured side by side in one run.

For each file, in alternating rounds: the decode server started with ``MEDIMG_DECODE_SANDBOX=1`` (children confined)
and with ``0`` (as before), ``--n`` decodes each round through ``read_isolated``. Files: a lung CT PNG of the data
set, a 512x512 CT DICOM given as a path (the child is allowed that one file), and a sound 4096x4096 JPEG 2000 DICOM.

Usage: python benchmarks/decode_sandbox.py [--n 20] [--rounds 3]
Prints the median decode time each way, their difference and ratio, and what the server reported of the sandbox.
Timing lives here, not in pytest.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medimg_demo.imaging import isolated  # noqa: E402
from medimg_demo.imaging.jail_warm import dicom_of  # noqa: E402
from medimg_demo.manifest import resolve_data_dir  # noqa: E402


def files(folder: Path) -> dict[str, bytes | str]:
    from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

    y, x = np.mgrid[:512, :512]
    ct = folder / "ct.dcm"
    ct.write_bytes(dicom_of(((x + y) % 256).astype(np.uint8), ExplicitVRLittleEndian))
    y4, x4 = np.mgrid[:4096, :4096]
    return {
        "lung CT PNG (bytes)": sorted((resolve_data_dir(None, "lung_ct") / "images").glob("*.png"))[0].read_bytes(),
        "CT DICOM 512x512 (path)": str(ct),
        "JPEG 2000 DICOM 4096x4096": dicom_of(((x4 * 7 + y4 * 3) % 256).astype(np.uint8), JPEG2000Lossless),
    }


def _server(sandbox: str) -> str:
    isolated._stop()
    os.environ["MEDIMG_DECODE_SANDBOX"] = sandbox
    isolated.start()
    return str(isolated._server.get("sandbox"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="decodes per file per round (default 20)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of each way (default 3)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not isolated.enabled():
        print("Isolation is off here (MEDIMG_DECODE_ISOLATION=0, or no fork / Unix sockets).")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        cases = files(Path(tmp))
        times: dict[str, dict[str, list[float]]] = {name: {"1": [], "0": []} for name in cases}
        said = {}
        for _ in range(args.rounds):
            for way in ("1", "0"):
                said[way] = _server(way)
                for name, src in cases.items():
                    isolated.read_isolated(src)  # the first after a start is not timed
                    for _ in range(args.n):
                        t0 = time.perf_counter()
                        isolated.read_isolated(src)
                        times[name][way].append(time.perf_counter() - t0)
        isolated._stop()
    print(f"sandbox on: the server said '{said['1']}'; off: '{said['0']}'")
    print(f"{'file':28} {'not confined':>13} {'confined':>9} {'added':>8} {'ratio':>6}")
    for name, t in times.items():
        off, on = statistics.median(t["0"]), statistics.median(t["1"])
        print(f"{name:28} {off * 1000:11.1f}ms {on * 1000:7.1f}ms {(on - off) * 1000:6.1f}ms {on / off:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
