"""Build the mixed batch folder of issue 15 from the shared data: about 1,000 files of PNG, DICOM and a few broken
ones, in nested folders, for ``benchmarks/batch_throughput.py`` and ``python -m medimg_demo batch``.

    python benchmarks/make_mixed_folder.py OUT [--brain-png 646] [--brain-dicom 250] [--other-png 100] [--broken 8]

Brain MRI test images as PNG; brain MRI val images written as MR DICOM (with fake patient identifiers, so that
the table can be checked for leaks); lung CT and breast ultrasound test images as PNG (other tasks: the brain
model's gate refuses them); broken files: a truncated PNG, text named .dcm, an empty file, random bytes.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medimg_demo.manifest import read_manifest  # noqa: E402
from medimg_demo.paths import data_root  # noqa: E402

log = logging.getLogger("make_mixed_folder")
#: Fake identifiers written into every DICOM: none may reach the batch table.
FAKE_PHI = {"PatientName": "Doe^Jane^Batch", "PatientID": "PID-BATCH-4711", "PatientBirthDate": "19580203",
            "InstitutionName": "Secret General Hospital"}


def _dicom(png: Path, out: Path, spacing: float | None) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.uint16) * 16  # 12-bit MR-like values
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.BodyPartExamined = "MR", "BRAIN"
    for k, v in FAKE_PHI.items():
        setattr(ds, k, v)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if spacing:
        ds.PixelSpacing = [spacing, spacing]
    ds.PixelData = pixels.tobytes()
    ds.save_as(out, enforce_file_format=True)


def build(out: Path, brain_png: int, brain_dicom: int, other_png: int, broken: int) -> int:
    root = data_root()
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    brain = read_manifest(root / "brain_mri")
    for i, r in enumerate(brain[brain.split == "test"].head(brain_png).itertuples()):
        dst = out / "brain" / "png" / f"{i // 100:02d}" / f"b{i:04d}.png"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / "brain_mri" / r.image, dst)
        n += 1
    for i, r in enumerate(brain[brain.split == "val"].head(brain_dicom).itertuples()):
        dst = out / "brain" / "dicom" / f"{i // 100:02d}" / f"IM{i:05d}"  # no extension, as PACS exports are
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            spacing: float | None = float(r.pixel_spacing_mm)
        except (TypeError, ValueError):
            spacing = None  # not known for this source
        _dicom(root / "brain_mri" / r.image, dst, spacing)
        n += 1
    for task in ("lung_ct", "breast_us"):
        m = read_manifest(root / task)
        for i, r in enumerate(m[m.split == "test"].head(other_png // 2).itertuples()):
            dst = out / task / f"{task}_{i:04d}.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / task / r.image, dst)
            n += 1
    bad = out / "broken"
    bad.mkdir(exist_ok=True)
    sample = next((out / "brain" / "png").rglob("*.png")).read_bytes()
    makers = [lambda: sample[: len(sample) // 3], lambda: b"this is a text file, not a DICOM\n", lambda: b"",
              lambda: np.random.default_rng(0).bytes(4096)]
    names = ["truncated.png", "notes.dcm", "empty.png", "random.bin"]
    for i in range(broken):
        (bad / f"{i:02d}_{names[i % 4]}").write_bytes(makers[i % 4]())
        n += 1
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--brain-png", type=int, default=646)
    p.add_argument("--brain-dicom", type=int, default=250)
    p.add_argument("--other-png", type=int, default=100)
    p.add_argument("--broken", type=int, default=8)
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if a.out.exists() and any(a.out.iterdir()):
        raise SystemExit(f"{a.out} is not empty; give a new folder.")
    n = build(a.out, a.brain_png, a.brain_dicom, a.other_png, a.broken)
    log.info("%d files written under %s", n, a.out)


if __name__ == "__main__":
    main()
