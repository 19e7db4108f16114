"""Shared fixtures: synthetic images, DICOM builders and a tiny random model in a temporary registry."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# In-process tests record predictions and feedback: keep them out of the developer's own state folder.
os.environ.setdefault("MEDIMG_STATE_DIR", tempfile.mkdtemp(prefix="medimg-test-state-"))

REPO = Path(__file__).resolve().parent.parent
DATA_ROOT = Path(os.environ.get("MEDIMG_DATA_DIR", REPO.parent / "shared" / "data"))
LUNG = DATA_ROOT / "lung_ct"


def png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG") if mode else Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def gradient(h: int = 64, w: int = 80) -> np.ndarray:
    """A smooth test image in [0, 1] with a bright blob (something for a model to look at)."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = 0.2 + 0.3 * xx / w + 0.5 * np.exp(-(((yy - h * 0.4) ** 2) + ((xx - w * 0.6) ** 2)) / (2 * (h * 0.12) ** 2))
    return np.clip(img, 0, 1)


def dicom_bytes(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[float, float] | None = None,
    modality: str = "CT",
    preamble: bool = True,
    phi: bool = True,
    spacing: tuple[float, float] | None = (0.7, 0.7),
    signed: bool = False,
) -> bytes:
    """A minimal but valid DICOM file with ``pixels`` as stored values (2-D, or frames x rows x columns), optionally
    carrying fake PHI."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    if phi:
        ds.PatientName = "Doe^Jane^Secret"
        ds.PatientID = "PID-998877"
        ds.PatientBirthDate = "19600101"
        ds.PatientAddress = "1 Hidden Road, Nowhere"
        ds.InstitutionName = "Secretia General Hospital"
    arr = np.asarray(pixels)
    if arr.ndim == 3:  # frames first: a multi-frame image
        ds.NumberOfFrames = arr.shape[0]
    ds.Rows, ds.Columns = arr.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    bits = 8 if arr.dtype.itemsize == 1 else 16
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept or 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if spacing is not None:
        ds.PixelSpacing = list(spacing)
    ds.PixelData = arr.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    return data if preamble else data[132:]


def _tiny_model(root: Path, model_id: str, task: str, heads: dict[str, list[str]]) -> None:
    """One random-weight timm ``test_efficientnet`` model (0.1 M parameters, made for tests) at 64 px."""
    import torch

    from medimg_demo.models.network import TumorNet
    from medimg_demo.models.weights import save_checkpoint

    torch.manual_seed(0)
    model = TumorNet("test_efficientnet", heads, pretrained="none")
    folder = root / model_id
    sha = save_checkpoint(model, folder / "weights.safetensors", fp16=True)
    cfg = {
        "id": model_id,
        "task": task,
        "arch": "test_efficientnet",
        "heads": heads,
        "input": {"size": [64, 64], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
        "target_layer": "features",
        "temperature": {"type": 1.5, "stage": 1.0} if "stage" in heads else {"type": 1.5},
        "weights": {"file": "weights.safetensors", "sha256": sha},
        "default": True,
    }
    if task == "lung_ct":
        cfg["task_title"] = "Lung CT"
    (folder / "config.json").write_text(json.dumps(cfg))


@pytest.fixture(scope="session")
def tiny_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry folder with one random-weight lung CT model at 64 px (for fast tests of the machinery)."""
    root = tmp_path_factory.mktemp("models")
    heads = {"type": ["adenocarcinoma", "large_cell_carcinoma", "normal", "squamous_cell_carcinoma"], "stage": ["IIIa", "Ib", "none"]}
    _tiny_model(root, "lung_ct.tiny_v0", "lung_ct", heads)
    return root


@pytest.fixture(scope="session")
def tiny_brain_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with one random-weight brain MRI model: for MR inputs, which a lung CT model refuses."""
    root = tmp_path_factory.mktemp("brain_models")
    _tiny_model(root, "brain_mri.tiny_v0", "brain_mri", {"type": ["glioma", "meningioma", "no_tumor", "pituitary"]})
    return root


def lung_test_image() -> Path:
    """A real lung CT image from the test split of the shared data (skips if the data is absent)."""
    import csv

    manifest = LUNG / "manifest.csv"
    if not manifest.is_file():
        pytest.skip(f"shared data not found at {LUNG}")
    with open(manifest, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["split"] == "test" and row["label"] == "adenocarcinoma":
                return LUNG / row["image"]
    pytest.skip("no adenocarcinoma test image in the manifest")
