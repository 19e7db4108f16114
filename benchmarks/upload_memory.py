"""Peak RSS growth of one upload, and of two at once, through the whole analysis (decode, predict, explain, render).

Usage: python benchmarks/upload_memory.py [--cases png,jpeg,dicom,png-rgba,deid,deid-file] [--model ID]

Each case runs in a fresh subprocess: warm-up on a small image (model loaded, first forward done), then the
process's peak RSS is reset (``/proc/self/clear_refs``) and the case runs once alone, then (new subprocess) twice
at once in two threads. The growth is VmHWM minus the RSS before the case; the budget from issue 12 is 300 MB for
one upload and 1 GB for two at once. Without /proc (not Linux), ``resource``'s lifetime peak is used instead.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Decoding and cleaning run in children of the decode server in the app, outside this process's RSS: measured here
# in-process (the worst case, and what the README's figures are), unless the caller sets MEDIMG_DECODE_ISOLATION.
os.environ.setdefault("MEDIMG_DECODE_ISOLATION", "0")

BUDGET_MB = {"alone": 300.0, "two at once": 1024.0}
CASES = {
    "png": "8000x8000 all-zero grayscale PNG",
    "jpeg": "8000x6000 colour JPEG (q90)",
    "dicom": "CT, 1024x1024 x 90 frames, 16-bit, uncompressed",
    "png-rgba": "8000x8000 RGBA PNG (worst decode buffer)",
    "deid": "de-identify the multi-frame DICOM from bytes (deidentify(data), as clean_upload calls it)",
    "deid-file": "de-identify the multi-frame DICOM file to file (deidentify_file, pixel data streamed)",
    "deid-limit": "clean a DICOM just under the 100 MB default upload limit from bytes, then analyse it (the app's path)",
}


def _kib(field: str) -> float | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    peak = _kib("VmHWM")
    if peak is not None:
        return peak
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_inputs(folder: Path) -> dict[str, Path]:
    """Write the test files (no shared data needed)."""
    import numpy as np
    from PIL import Image

    paths = {}
    small = folder / "small.png"
    yy, xx = np.mgrid[0:256, 0:256]
    Image.fromarray(((xx + yy) % 256).astype(np.uint8)).save(small)
    paths["small"] = small
    paths["png"] = folder / "zero8000.png"
    Image.new("L", (8000, 8000), 0).save(paths["png"], optimize=False)
    rng = np.random.default_rng(0)
    grad = np.linspace(0, 255, 8000, dtype=np.float32)[None, :] * np.ones((6000, 1), np.float32)
    rgb = np.stack([grad, grad[:, ::-1], np.full_like(grad, 128.0)], -1)
    rgb += rng.normal(0, 8, rgb.shape).astype(np.float32)
    paths["jpeg"] = folder / "large.jpg"
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(paths["jpeg"], quality=90)
    del grad, rgb
    paths["png-rgba"] = folder / "rgba8000.png"
    Image.new("RGBA", (8000, 8000), (30, 60, 90, 200)).save(paths["png-rgba"])
    paths["dicom"] = paths["deid"] = paths["deid-file"] = folder / "multiframe.dcm"
    _multiframe_dicom(paths["dicom"])
    paths["deid-limit"] = folder / "at_limit.dcm"
    _multiframe_dicom(paths["deid-limit"], n=47)  # 1024 x 1024 x 2 bytes x 47 frames = 98.6 MB
    return paths


def _multiframe_dicom(path: Path, n: int = 90, size: int = 1024) -> None:
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName, ds.PatientID = "CT", "Bench^Mark", "BENCH-1"
    ds.Rows = ds.Columns = size
    ds.NumberOfFrames = n
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = -600, 1500
    ds.PixelSpacing = [0.5, 0.5]
    yy, xx = np.mgrid[0:size, 0:size]
    frame = (1024 + 400 * np.sin(xx / 40.0) * np.cos(yy / 55.0)).astype(np.uint16)
    ds.PixelData = np.repeat(frame[None], n, axis=0).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    path.write_bytes(buf.getvalue())


def child(case: str, mode: str, path: str, small: str, model: str | None) -> dict:
    """Runs in the subprocess: warm up, reset the peak, run the case alone or twice at once."""
    from medimg_demo.errors import MedimgError
    from medimg_demo.web.analysis import analyse

    for _ in range(2):
        analyse(small, model)
    gc.collect()
    time.sleep(0.2)
    exact = _reset_peak()
    base = _kib("VmRSS") if exact else _peak_mb()
    errors: list[str] = []

    def one() -> None:
        try:
            if case == "deid":
                from medimg_demo.imaging.deid import deidentify

                deidentify(Path(path).read_bytes())
            elif case == "deid-limit":
                from medimg_demo.web.uploads import clean_upload

                analyse(clean_upload(Path(path).read_bytes())[0], model)
            elif case == "deid-file":
                from medimg_demo.imaging.deid import deidentify_file

                deidentify_file(path, Path(path).with_name(f"copy-{threading.get_ident()}.dcm"))
            else:
                analyse(path, model)
        except MedimgError as exc:
            errors.append(str(exc)[:120])

    t0 = time.perf_counter()
    if mode == "alone":
        one()
    else:
        barrier = threading.Barrier(2)

        def run() -> None:
            barrier.wait()
            one()

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    seconds = time.perf_counter() - t0
    growth = _peak_mb() - (base or 0.0)
    return {"growth_mb": round(growth, 1), "seconds": round(seconds, 2), "errors": errors,
            "measure": "VmHWM reset" if exact else "ru_maxrss"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--model", default=None)
    ap.add_argument("--child", nargs=4, metavar=("CASE", "MODE", "PATH", "SMALL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, model=args.model)))
        return
    cases = [c for c in args.cases.split(",") if c]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_inputs(Path(tmp))
        for case in cases:
            for mode in ("alone", "two at once"):
                cmd = [sys.executable, __file__, "--child", case, mode, str(paths[case]), str(paths["small"])]
                if args.model:
                    cmd += ["--model", args.model]
                proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
                if proc.returncode != 0:
                    tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
                    rows.append((case, mode, float("nan"), float("nan"), f"failed: {tail[0][:80]}"))
                    continue
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                note = "; ".join(res["errors"]) or res["measure"]
                rows.append((case, mode, res["growth_mb"], res["seconds"], note))
                print(f"  {case:9s} {mode:12s} {res['growth_mb']:8.1f} MB  {res['seconds']:6.2f} s", file=sys.stderr)
        sizes = {c: paths[c].stat().st_size / 1e6 for c in cases}
    print(f"{'case':10s} {'file MB':>8s}  {'mode':12s} {'peak growth MB':>15s} {'budget MB':>10s} {'ok':>4s} {'s':>7s}  note")
    for case, mode, growth, secs, note in rows:
        ok = "yes" if growth <= BUDGET_MB[mode] else "NO"
        print(f"{case:10s} {sizes[case]:8.1f}  {mode:12s} {growth:15.1f} {BUDGET_MB[mode]:10.0f} {ok:>4s} {secs:7.2f}  {note}")
    print("cases: " + "; ".join(f"{c} = {CASES[c]}" for c in cases))


if __name__ == "__main__":
    main()
