"""Shared fixtures: synthetic images, DICOM builders, a tiny random model in a temporary registry, and the feedback
store on both backends (SQLite, and a throwaway PostgreSQL server)."""

from __future__ import annotations

import atexit
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# In-process tests record predictions and feedback: keep them out of the developer's own state folder, in a folder
# removed when the test run ends (one run used to leave one behind in the system's temporary folder).
if "MEDIMG_STATE_DIR" not in os.environ:
    os.environ["MEDIMG_STATE_DIR"] = tempfile.mkdtemp(prefix="medimg-test-state-")
    atexit.register(shutil.rmtree, os.environ["MEDIMG_STATE_DIR"], ignore_errors=True)
# Gradio's upload cache too: importing app.py would otherwise point it at <system temp>/medimg_demo-uploads-<key>,
# where in-process upload tests left their files behind after every run.
if "GRADIO_TEMP_DIR" not in os.environ:
    os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="medimg-test-uploads-")
    atexit.register(shutil.rmtree, os.environ["GRADIO_TEMP_DIR"], ignore_errors=True)
# ... and out of a developer's own feedback database server (tests that want PostgreSQL use the `store` fixture).
os.environ.pop("MEDIMG_DB_URL", None)

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


def two_class_set(root: Path, n_per_class: int = 12, noise: int = 60, square: int = 230, seed: int = 0) -> None:
    """A toy manifest set: two classes that differ by a bright square's side (left vs right), 48 px, over noise;
    ``n_per_class`` train and 4 val images per class."""
    import pandas as pd
    from PIL import Image

    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in (("train", n_per_class), ("val", 4)):
        for label in ("left", "right"):
            for i in range(n):
                arr = (rng.random((48, 48)) * noise).astype(np.uint8)
                c = 12 if label == "left" else 36
                arr[18:30, c - 6 : c + 6] = square
                name = f"images/{split}_{label}_{i}.png"
                Image.fromarray(arr).save(root / name)
                rows.append({"image": name, "label": label, "split": split})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)


@pytest.fixture()
def decoded(monkeypatch) -> dict[str, set[str]]:  # noqa: ANN001
    """The images of each data set a training run builds, by its progress label ("decode train", "decode val",
    "decode calibration fold"): ``train`` and the held-out fold's calibration are spied on."""
    import medimg_demo.learn.holdout as holdout_mod
    import medimg_demo.learn.train as train_mod

    seen: dict[str, set[str]] = {}
    real = train_mod.ManifestDataset

    def spy(folder, frame, *args, desc="", **kwargs):  # noqa: ANN001, ANN202
        seen[desc] = set(frame.image)
        return real(folder, frame, *args, desc=desc, **kwargs)

    monkeypatch.setattr(train_mod, "ManifestDataset", spy)
    monkeypatch.setattr(holdout_mod, "ManifestDataset", spy)
    return seen


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


def _tiny_model(root: Path, model_id: str, task: str, heads: dict[str, list[str]], lesion: bool = False,
                call: str | None = None) -> None:
    """One random-weight timm ``test_efficientnet`` model (0.1 M parameters, made for tests) at 64 px. With
    ``lesion``, a lesion head that finds the whole image to be lesion; with ``call``, the type head always calls
    that class."""
    import torch

    from medimg_demo.models.network import TumorNet
    from medimg_demo.models.weights import save_checkpoint

    torch.manual_seed(0)
    model = TumorNet("test_efficientnet", heads, pretrained="none", lesion_taps=(1, 2, 3, 4) if lesion else None)
    with torch.no_grad():
        if call is not None:
            head = model.heads["head_type"]
            head.weight.zero_()
            head.bias.copy_(torch.tensor([8.0 if c == call else 0.0 for c in heads["type"]]))
        if lesion:
            assert model.lesion is not None
            model.lesion.out.weight.zero_()
            model.lesion.out.bias.fill_(8.0)
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
    if lesion:
        cfg["lesion"] = {"taps": [1, 2, 3, 4], "channels": 48, "threshold": 0.5}
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


@pytest.fixture(scope="session")
def tiny_breast_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with one breast US model with a lesion head: it calls every image malignant and all of it lesion."""
    root = tmp_path_factory.mktemp("breast_models")
    _tiny_model(root, "breast_us.tiny_v0", "breast_us", {"type": ["benign", "malignant", "normal"]}, lesion=True,
                call="malignant")
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


# --- The feedback store on both backends -------------------------------------------------------------------------
# `store` yields a SQLite file path, then a PostgreSQL URL: every test that takes it runs on both. The server is a
# throwaway cluster (initdb in a temporary folder, 127.0.0.1 on a free port, stopped at the end of the session),
# or the server of MEDIMG_TEST_DB_URL. Without PostgreSQL the postgres cases skip, saying why; with
# MEDIMG_REQUIRE_POSTGRES=1 (set by .ci/run) they fail instead.


def _pg_unavailable(reason: str) -> None:
    if os.environ.get("MEDIMG_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required (MEDIMG_REQUIRE_POSTGRES=1) but {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


def _pg_bin() -> Path | None:
    """The folder of initdb/pg_ctl: MEDIMG_PG_BIN, else PATH, else Debian's /usr/lib/postgresql/<newest>/bin."""
    if os.environ.get("MEDIMG_PG_BIN"):
        return Path(os.environ["MEDIMG_PG_BIN"])
    if shutil.which("initdb") and shutil.which("pg_ctl"):
        return Path(shutil.which("initdb") or "").parent
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_cluster(folder: Path, bin_dir: Path, password: str) -> int:
    """initdb + pg_ctl start as a user PostgreSQL accepts (it refuses root: then as `postgres`); returns the port."""
    as_user: dict[str, object] = {}
    if os.geteuid() == 0:
        as_user = {"user": "postgres", "group": "postgres", "extra_groups": []}
        shutil.chown(folder, "postgres", "postgres")
    (folder / "pw").write_text(password)
    (folder / "sock").mkdir()
    for p in (folder / "pw", folder / "sock"):
        if as_user:
            shutil.chown(p, "postgres", "postgres")
    run = dict(cwd=folder, check=True, capture_output=True, text=True, timeout=120, **as_user)
    subprocess.run([str(bin_dir / "initdb"), "-D", str(folder / "data"), "-U", "medimg", "--pwfile", str(folder / "pw"),
                    "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C", "--no-sync"], **run)
    for _ in range(3):  # another process may take the free port between the check and the start
        port = _free_port()
        opts = (f"-h 127.0.0.1 -p {port} -k {folder / 'sock'} -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off")
        done = subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-l", str(folder / "log"), "-w",
                               "-t", "60", "-o", opts, "start"], **{**run, "check": False})
        if done.returncode == 0:
            return port
    raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()} {(folder / 'log').read_text()[-2000:]}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL database for the tests: MEDIMG_TEST_DB_URL, else a throwaway local cluster."""
    try:
        import psycopg
    except ImportError:
        _pg_unavailable("the driver is missing (pip install -r requirements.txt installs psycopg)")
    if os.environ.get("MEDIMG_TEST_DB_URL"):
        yield os.environ["MEDIMG_TEST_DB_URL"]
        return
    bin_dir = _pg_bin()
    if bin_dir is None or not (bin_dir / "initdb").is_file():
        _pg_unavailable("initdb not found (apt-get install postgresql, or set MEDIMG_PG_BIN or MEDIMG_TEST_DB_URL)")
    folder = Path(tempfile.mkdtemp(prefix="medimg-pg-"))
    password = "pw-" + secrets.token_hex(8)
    try:
        port = _start_cluster(folder, bin_dir, password)
    except (OSError, LookupError, RuntimeError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        shutil.rmtree(folder, ignore_errors=True)
        _pg_unavailable(f"a throwaway server could not be started ({exc} {detail.strip()[-500:]})")
    base = f"postgresql://medimg:{password}@127.0.0.1:{port}"
    try:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as con:
            con.execute("CREATE DATABASE medimg")
        yield f"{base}/medimg"
    finally:
        subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "stop"], cwd=folder,
                       capture_output=True, timeout=60, **({"user": "postgres"} if os.geteuid() == 0 else {}))
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A PostgreSQL URL whose tables live in a new, empty schema (dropped afterwards): each test starts empty."""
    import psycopg

    name = "t_" + secrets.token_hex(6)
    with psycopg.connect(postgres_server, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {name}")
    yield postgres_server + ("&" if "?" in postgres_server else "?") + f"options=-csearch_path%3D{name}"
    with psycopg.connect(postgres_server, autocommit=True) as con:
        con.execute(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """A feedback store location, once per backend: a SQLite file path, then a PostgreSQL URL."""
    return tmp_path / "fb.sqlite" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
