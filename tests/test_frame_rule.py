"""One frame rule: a multi-frame DICOM is read at its middle frame unless a frame is asked for, by the app, the CLI
(``predict`` and ``report``), batch and the report alike; every output says which frame it read, and the JSON
carries the file's warnings (here: burned-in annotation)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from conftest import dicom_bytes, gradient
from medimg_demo.cli import main
from medimg_demo.imaging.dicom import BURNED_IN_WARNING

N_FRAMES, MIDDLE = 5, 2


def _cine(folder: Path) -> Path:
    """A 5-frame CT (each frame different) that declares burned-in annotation."""
    from pydicom import dcmread

    frames = np.stack([(np.roll(gradient(64, 64), 9 * k, axis=1) * 1500).astype(np.uint16) for k in range(N_FRAMES)])
    ds = dcmread(io.BytesIO(dicom_bytes(frames, slope=1, intercept=-1024, window=(-600, 1500))))
    ds.BurnedInAnnotation = "YES"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cine.dcm"
    ds.save_as(path)
    return path


def _cli(capsys, *args: str) -> dict:  # noqa: ANN001
    assert main(["predict", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_app_cli_batch_and_report_read_the_same_middle_frame(tmp_path, tiny_registry, monkeypatch, capsys) -> None:
    from medimg_demo.batch.pipeline import run_batch
    from medimg_demo.report.pdf import report_file
    from medimg_demo.web import analysis, handlers

    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(tiny_registry))
    path = _cine(tmp_path / "in")

    cli = _cli(capsys, str(path))
    assert cli["frame_index"] == MIDDLE and BURNED_IN_WARNING in cli["warnings"]
    first = _cli(capsys, str(path), "--frame", "0")  # asked for: that frame, and the JSON says so
    assert first["frame_index"] == 0 and first["image_sha256"] != cli["image_sha256"]

    a = analysis.analyse(str(path))
    assert a.frame_index == MIDDLE and a.n_frames == N_FRAMES and a.prediction.image_sha256 == cli["image_sha256"]
    out = handlers.predict(str(path), None)
    assert out[9]["value"] == MIDDLE + 1 and out[9]["visible"]  # the frame box shows the frame used (1-based)
    assert out[7]["frame_index"] == MIDDLE and BURNED_IN_WARNING in out[7]["warnings"]
    assert f"frame {MIDDLE + 1} of {N_FRAMES} shown" in out[6] and BURNED_IN_WARNING in out[10]

    pred = report_file(path, tmp_path / "case.pdf")
    assert pred.frame_index == MIDDLE and pred.image_sha256 == cli["image_sha256"]
    assert pred.to_json()["warnings"] == cli["warnings"]

    table = tmp_path / "batch.parquet"
    run_batch(path.parent, "lung_ct.tiny_v0", table, registry=tiny_registry, use_ray=False, prefer_onnx=False)
    row = pd.read_parquet(table).iloc[0]
    assert row["frame_index"] == MIDDLE and row["image_sha256"] == cli["image_sha256"]
    # one frame, one answer: the same probabilities from every path
    probs = a.prediction.type_probs
    assert probs is not None and json.loads(row["type_probs"]).keys() == probs.keys()
    for label, p in json.loads(row["type_probs"]).items():
        assert abs(p - probs[label]) < 1e-3
        assert abs(pred.type_probs[label] - probs[label]) < 1e-5
