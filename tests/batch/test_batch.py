"""The batch table: one row per file, error rows for broken files, no identifier anywhere, resumable; and an
ONNX forward that matches torch before it is used."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import dicom_bytes, gradient, png_bytes

PHI = ("Doe^Jane^Secret", "PID-998877", "19600101", "Hidden Road", "Secretia", "Doe", "Jane")


def _folder(root: Path) -> Path:
    """12 PNGs, 2 DICOMs with fake PHI (one in a subfolder) and 2 broken files."""
    rng = np.random.default_rng(0)
    for i in range(12):
        img = (np.clip(gradient() + rng.normal(0, 0.05, (64, 80)), 0, 1) * 255).astype(np.uint8)
        (root / f"img{i:02d}.png").write_bytes(png_bytes(img))
    (root / "sub").mkdir()
    ct = (gradient() * 1000).astype(np.uint16)
    (root / "sub" / "scan1").write_bytes(dicom_bytes(ct, slope=1.0, intercept=-1024, window=(-600, 1500)))
    (root / "scan2.dcm").write_bytes(dicom_bytes(ct[::-1].copy(), modality="CT"))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture()
def tiny_onnx(tiny_registry: Path, tmp_path: Path) -> Path:
    """A copy of the tiny registry whose model has a verified, pinned ONNX forward."""
    from medimg_demo.models.export import export_onnx
    from medimg_demo.models.registry import get_model

    reg = tmp_path / "registry"
    shutil.copytree(tiny_registry, reg)
    cfg = get_model("lung_ct.tiny_v0", reg)
    rng = np.random.default_rng(1)
    result = export_onnx(cfg, [rng.normal(0, 1, (3, 64, 64)).astype(np.float32) for _ in range(8)])
    assert result.max_prob_diff <= 1e-4 and result.n_images == 8
    return reg


def test_export_writes_pinned_fp16_graph_that_matches_torch(tiny_onnx: Path) -> None:
    from medimg_demo.models.registry import get_model
    from medimg_demo.models.weights import sha256_file

    cfg = get_model("lung_ct.tiny_v0", tiny_onnx)
    assert cfg.onnx is not None and cfg.onnx[1] == sha256_file(cfg.folder / "forward.onnx")
    assert json.loads((cfg.folder / "config.json").read_text())["onnx"]["weights_sha256"] == cfg.weights_sha256


def test_export_refuses_when_onnx_differs(tiny_registry: Path, tmp_path: Path) -> None:
    from medimg_demo.errors import ModelError
    from medimg_demo.models.export import export_onnx
    from medimg_demo.models.registry import get_model

    reg = tmp_path / "r"
    shutil.copytree(tiny_registry, reg)
    cfg = get_model("lung_ct.tiny_v0", reg)
    with pytest.raises(ModelError, match="nothing was written"):
        export_onnx(cfg, [np.zeros((3, 64, 64), np.float32)], tolerance=-1.0)
    assert not (cfg.folder / "forward.onnx").exists() and "onnx" not in json.loads((cfg.folder / "config.json").read_text())


@pytest.mark.slow  # starting Ray takes most of its 14 s; .ci/run runs it
def test_batch_on_ray_one_row_per_file_no_phi_and_rerun_skips(tiny_onnx: Path, tmp_path: Path) -> None:
    from medimg_demo.batch.pipeline import parts_dir, run_batch

    (tmp_path / "in").mkdir()
    src = _folder(tmp_path / "in")
    out = tmp_path / "out" / "results.parquet"
    out.parent.mkdir()
    heat = tmp_path / "heat"
    first = run_batch(src, "lung_ct.tiny_v0", out, registry=tiny_onnx, heatmaps=heat, heatmap_glob="img0[0-1].png")
    table = pd.read_parquet(out)
    assert len(table) == 16 and table["path"].is_unique and not parts_dir(out).exists()
    assert set(table["path"]) == {*(f"img{i:02d}.png" for i in range(12)), "sub/scan1", "scan2.dcm", "broken.png",
                                  "notes.txt"}
    errors = table[table["status"] == "error"]
    assert set(errors["path"]) == {"broken.png", "notes.txt"} and errors["reason"].str.len().min() > 10
    scored = table[table["status"] != "error"]
    assert set(scored["status"]) <= {"ok", "refused", "indeterminate"}
    assert (scored["forward"] == "onnx").all() and scored["image_sha256"].str.len().eq(64).all()
    ok = scored[scored["status"] == "ok"]
    assert len(ok) and all(abs(sum(json.loads(p).values()) - 1) < 1e-4 for p in ok["type_probs"])
    blob = table.to_csv() + out.read_bytes().decode("latin-1")
    assert not [s for s in PHI if s in blob]
    # heatmaps: only for the two files asked for (if answered), named by the image hash
    asked = set(ok[ok["path"].isin(["img00.png", "img01.png"])]["image_sha256"])
    assert {p.stem for p in heat.glob("*.png")} == asked
    assert first.done == 16 and first.counts["error"] == 2
    second = run_batch(src, "lung_ct.tiny_v0", out, registry=tiny_onnx, use_ray=False)
    assert second.done == 0 and second.skipped == 16 and len(pd.read_parquet(out)) == 16
    assert second.seconds < first.seconds / 4


def test_killed_run_resumes_from_parts_and_changed_file_is_rescored(tiny_registry: Path, tmp_path: Path) -> None:
    from medimg_demo.batch.pipeline import _write_part, parts_dir, run_batch
    from medimg_demo.batch.score import COLUMNS

    (tmp_path / "in").mkdir()
    src = _folder(tmp_path / "in")
    out = tmp_path / "t.parquet"
    run_batch(src, "lung_ct.tiny_v0", out, registry=tiny_registry, use_ray=False, batch_size=5, prefer_onnx=False)
    table = pd.read_parquet(out)
    assert (table.loc[table["status"] != "error", "forward"] == "torch").all()
    # a killed run: one part left behind, the table not yet merged
    out.unlink()
    _write_part(out, table.iloc[:5][list(COLUMNS)])
    again = run_batch(src, "lung_ct.tiny_v0", out, registry=tiny_registry, use_ray=False, prefer_onnx=False)
    assert again.skipped == 5 and again.done == 11 and len(pd.read_parquet(out)) == 16
    (src / "img03.png").write_bytes(png_bytes((gradient() * 200).astype(np.uint8)))
    third = run_batch(src, "lung_ct.tiny_v0", out, registry=tiny_registry, use_ray=False, prefer_onnx=False,
                      keep_paths=True)
    final = pd.read_parquet(out)
    assert third.done == 1 and len(final) == 16 and not parts_dir(out).exists()


def test_no_paths_leaves_no_file_name_in_the_table_an_earlier_run_wrote_either(tiny_registry: Path,
                                                                               tmp_path: Path) -> None:
    """A rerun with --no-paths into a table that held file names (which may carry a patient's) kept them without a
    word; now no row of the table keeps one, and nothing is scored again for it."""
    from medimg_demo.batch.pipeline import run_batch

    (tmp_path / "in").mkdir()
    src = _folder(tmp_path / "in")
    (src / "DOE_JANE_1960.png").write_bytes((src / "img00.png").read_bytes())
    out = tmp_path / "t.parquet"
    run_batch(src, "lung_ct.tiny_v0", out, registry=tiny_registry, use_ray=False, prefer_onnx=False)
    assert "DOE_JANE_1960.png" in set(pd.read_parquet(out)["path"])
    again = run_batch(src, "lung_ct.tiny_v0", out, registry=tiny_registry, use_ray=False, prefer_onnx=False,
                      keep_paths=False)
    table = pd.read_parquet(out)
    assert again.done == 0 and len(table) == 17 and table["path"].isna().all()
    assert b"DOE_JANE" not in out.read_bytes()
    # a table passed on says what it is: the research-use notice in its Parquet metadata
    import pyarrow.parquet as pq

    from medimg_demo.batch.pipeline import NOTICE_KEY
    from medimg_demo.notice import DISCLAIMER

    assert pq.read_schema(out).metadata[NOTICE_KEY].decode() == DISCLAIMER


@pytest.mark.slow
def test_every_bundled_onnx_forward_matches_torch_on_its_test_split() -> None:
    from medimg_demo.errors import DataError
    from medimg_demo.manifest import resolve_data_dir
    from medimg_demo.models.export import max_prob_diff, split_inputs
    from medimg_demo.models.registry import list_models
    from medimg_demo.models.weights import sha256_file

    models = list_models()
    missing = [m.id for m in models if m.onnx is None]
    assert not missing, f"run `python -m medimg_demo export-onnx --model all`; no ONNX forward for {missing}"
    for cfg in models:
        path = cfg.folder / cfg.onnx[0]
        assert sha256_file(path) == cfg.onnx[1] and path.stat().st_size < 12e6
        try:
            data = resolve_data_dir(None, cfg.task)
        except DataError:  # the data set is optional on a fresh clone
            pytest.skip("shared data not found")
        diff, n = max_prob_diff(cfg, path, split_inputs(cfg, data, "test"))
        assert n > 50 and diff <= 1e-4, (cfg.id, diff)


def test_a_recalibrated_model_scores_the_table_again_not_half_of_it(tiny_registry: Path, tmp_path: Path) -> None:
    """A resumed run after `calibrate --write` must not mix two calibrations in one table without a trace: every
    row the old calibration wrote is scored again (files that failed to decode stay as they are)."""
    from medimg_demo.batch.pipeline import run_batch
    from medimg_demo.models.config_file import update_config

    (tmp_path / "in").mkdir()
    src = _folder(tmp_path / "in")
    reg = tmp_path / "registry"
    shutil.copytree(tiny_registry, reg)
    out = tmp_path / "t.parquet"
    run_batch(src, "lung_ct.tiny_v0", out, registry=reg, use_ray=False, prefer_onnx=False)
    before = pd.read_parquet(out).set_index("path")
    old_state = before["scored_with"].iloc[0]
    assert (before["scored_with"] == old_state).all()
    same = run_batch(src, "lung_ct.tiny_v0", out, registry=reg, use_ray=False, prefer_onnx=False)
    assert same.done == 0 and same.skipped == 16 and same.rescored == 0
    update_config(reg / "lung_ct.tiny_v0", lambda r: r.__setitem__("temperature", {"type": 3.0}))
    again = run_batch(src, "lung_ct.tiny_v0", out, registry=reg, use_ray=False, prefer_onnx=False)
    after = pd.read_parquet(out).set_index("path")
    broken = after["status"] == "error"
    assert again.done == again.rescored == 14 and again.skipped == 2 and len(after) == 16 and broken.sum() == 2
    assert (after.loc[~broken, "scored_with"] != old_state).all() and (after.loc[broken, "scored_with"] == old_state).all()
    ok = before.index[(before["status"] == "ok") & (after["status"] == "ok")]
    assert len(ok) and all(json.loads(before.loc[p, "type_probs"]) != json.loads(after.loc[p, "type_probs"]) for p in ok)
    assert "scored again" in again.line()


def test_the_newest_row_of_a_file_decides_and_old_tables_are_scored_again(tmp_path: Path) -> None:
    """A killed run after a recalibration leaves parts of the new state beside a table of the old one; with the
    old state back, the files whose newest row (the one merge keeps) is of the new state must be scored again, or
    the merged table stays mixed. A table written before ``scored_with`` existed is scored again as a whole."""
    from medimg_demo.batch.pipeline import _read_keys, _write_part

    out = tmp_path / "t.parquet"
    pd.DataFrame({"file_key": list("abcd"), "status": ["ok", "ok", "ok", "error"],
                  "scored_with": ["S1"] * 4}).to_parquet(out, index=False)
    _write_part(out, pd.DataFrame({"file_key": ["a", "b"], "status": ["ok", "unreadable"], "scored_with": ["S2"] * 2}))
    done, stale = _read_keys(out, "S1")
    assert done == {"c", "d"} and stale == {"a"}  # b: its newest row is a failed read, retried but not a model change
    done, stale = _read_keys(out, "S2")
    assert done == {"a", "d"} and stale == {"c"}
    old = tmp_path / "old.parquet"
    pd.DataFrame({"file_key": list("xy"), "status": ["ok", "error"]}).to_parquet(old, index=False)
    assert _read_keys(old, "S1") == ({"y"}, {"x"})
    # before 'unreadable' existed a read failure was an 'error' row: it is retried, a decode failure is not
    pd.DataFrame({"file_key": list("xyzw"), "status": ["ok", "error", "error", "error"],
                  "reason": [None, "Could not decode the image: not a PNG, JPEG or DICOM file.",
                             "The file could not be read (permissions or a storage error); make it readable and run "
                             "again.", "The file could not be read (permissions); make it readable and run again."]}
                 ).to_parquet(old, index=False)
    assert _read_keys(old, "S1") == ({"y"}, {"x"})


def test_recording_what_a_gate_was_fitted_under_does_not_rescore_tables(tiny_registry: Path) -> None:
    """The gate pin's record of its calibration changes no answer, so it leaves the state digest alone; a score
    temperature other than the calibration's changes the scores, so it changes the digest."""
    import dataclasses

    from medimg_demo.batch.score import scorer_state
    from medimg_demo.models.registry import get_model

    cfg = get_model(None, tiny_registry)
    gate = {"file": "gate.safetensors", "sha256": "0" * 64, "method": "energy", "threshold": -1.0, "abstain_below": 0.5}
    old = dataclasses.replace(cfg, raw={**cfg.raw, "gate": gate})
    same = dataclasses.replace(cfg, raw={**cfg.raw, "gate": {**gate, "score_temperature": cfg.gate_temperature,
                                                             "fitted_under": {"temperature": 0.3}}})
    other = dataclasses.replace(cfg, raw={**cfg.raw, "gate": {**gate, "score_temperature": cfg.gate_temperature * 2}})
    moved = dataclasses.replace(cfg, raw={**cfg.raw, "gate": {**gate, "threshold": -2.0}})
    assert scorer_state([old]) == scorer_state([same])
    assert len({scorer_state([old]), scorer_state([other]), scorer_state([moved])}) == 3


def test_uri_input_and_unreadable_file_give_rows(tiny_registry: Path, tmp_path: Path, monkeypatch) -> None:
    """A folder given as a file:// URI (the object-store code path) is listed like a local one; a file that cannot
    be read (a storage error while reading) becomes an error row and the run goes on."""
    from medimg_demo.batch import pipeline
    from medimg_demo.batch.pipeline import list_files, run_batch

    (tmp_path / "in").mkdir()
    src = _folder(tmp_path / "in")
    listed = list_files(f"file://{src}")
    assert [rel for _, rel, _, _ in listed] == [rel for _, rel, _, _ in list_files(src)]
    assert all(path.startswith("file://") for path, *_ in listed) and len(listed) == 16
    real = pipeline.read_blob

    def flaky(path: str, limit: int | None = None) -> bytes:
        if path.endswith("img03.png"):
            raise PermissionError(13, "Permission denied")
        return real(path, limit)

    monkeypatch.setattr(pipeline, "read_blob", flaky)
    summary = run_batch(f"file://{src}", "lung_ct.tiny_v0", tmp_path / "b.parquet", registry=tiny_registry,
                        use_ray=False, prefer_onnx=False)
    table = pd.read_parquet(tmp_path / "b.parquet").set_index("path")
    assert summary.done == 16 and len(table) == 16
    assert table.loc["img03.png", "status"] == "unreadable" and "could not be read" in table.loc["img03.png", "reason"]
    assert (table.drop(index="img03.png")["status"] != "error").sum() == 13  # 16 - the unreadable - 2 broken files
    monkeypatch.setattr(pipeline, "read_blob", real)  # readable again: the next run retries it, and only it
    again = run_batch(f"file://{src}", "lung_ct.tiny_v0", tmp_path / "b.parquet", registry=tiny_registry,
                      use_ray=False, prefer_onnx=False)
    table = pd.read_parquet(tmp_path / "b.parquet").set_index("path")
    assert again.done == 1 and again.skipped == 15 and table.loc["img03.png", "status"] != "unreadable"
    assert again.rescored == 0 and "scored again" not in again.line()  # a retried read is not a model change


def test_uri_input_gives_the_same_rows_as_the_folder(tiny_registry: Path, tmp_path: Path) -> None:
    from medimg_demo.batch.pipeline import run_batch

    (tmp_path / "in").mkdir()
    src = _folder(tmp_path / "in")
    run_batch(src, "lung_ct.tiny_v0", tmp_path / "a.parquet", registry=tiny_registry, use_ray=False, prefer_onnx=False)
    run_batch(f"file://{src}", "lung_ct.tiny_v0", tmp_path / "b.parquet", registry=tiny_registry, use_ray=False,
              prefer_onnx=False)
    cols = ["path", "file_key", "status", "image_sha256", "type_label", "type_probs"]
    a = pd.read_parquet(tmp_path / "a.parquet")[cols].sort_values("path").reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "b.parquet")[cols].sort_values("path").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_files_over_the_size_limit_are_refused_without_being_read_whole(tiny_registry: Path, tmp_path: Path,
                                                                        monkeypatch) -> None:
    """A file listed over MEDIMG_MAX_UPLOAD_MB is an 'error' row and is never read; one listed smaller than it is is
    read only up to the limit (plus one byte), then refused; the rest of the folder is scored as before."""
    from medimg_demo.batch import pipeline
    from medimg_demo.imaging import decode

    (tmp_path / "in").mkdir()
    src = _folder(tmp_path / "in")
    sizes = {p.name: p.stat().st_size for p in src.rglob("*") if p.is_file()}
    limit = sorted(sizes.values())[len(sizes) // 2]
    monkeypatch.setattr(decode, "MAX_BYTES", limit)
    reads: list[tuple[str, int | None]] = []
    real = pipeline.read_blob
    monkeypatch.setattr(pipeline, "read_blob", lambda path, lim=None: reads.append((path, lim)) or real(path, lim))
    pipeline.run_batch(src, "lung_ct.tiny_v0", tmp_path / "b.parquet", registry=tiny_registry, use_ray=False,
                       prefer_onnx=False)
    table = pd.read_parquet(tmp_path / "b.parquet")
    table["name"] = table["path"].map(lambda p: Path(p).name)
    table = table.set_index("name")
    over = {n for n, size in sizes.items() if size > limit}
    assert over and len(over) < len(sizes)
    for name in over:
        assert table.loc[name, "status"] == "error" and "over the limit" in table.loc[name, "reason"], name
    assert {Path(p).name for p, _ in reads} == set(sizes) - over and all(lim == limit for _, lim in reads)
    assert (table.drop(index=list(over))["status"] == "ok").any()
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x00" * (limit * 3))
    assert len(real(str(big), limit)) == limit + 1 and len(real(str(big))) == limit * 3
    reader = pipeline.bounded_reader(str(big), 10)  # listed small: read up to the limit, then refused
    with pytest.raises(decode.InputError, match="over the limit"):
        reader()
