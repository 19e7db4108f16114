"""config.json changes (calibration, gate, ONNX pin) made side by side: none lost, none seen half-written."""

from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path

import pytest

from medimg_demo.models.config_file import update_config


def _bump(folder: str, key: str, times: int) -> None:
    def change(record: dict) -> None:
        record[key] = record.get(key, 0) + 1

    for _ in range(times):
        update_config(Path(folder), change)


def _model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "lung_ct.tiny_v0"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"id": "lung_ct.tiny_v0", "notes": "x" * 200_000}) + "\n")
    return folder


def test_updates_from_two_processes_and_threads_are_all_kept(tmp_path: Path) -> None:
    """Two CLI runs (processes) and two threads each change their own key 40 times: a read-change-write without
    the lock loses some of them (the later writer puts back what it read before the other wrote)."""
    folder = _model_folder(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_bump, args=(str(folder), f"p{i}", 40)) for i in range(2)]
    threads = [threading.Thread(target=_bump, args=(str(folder), f"t{i}", 40)) for i in range(2)]
    for w in [*procs, *threads]:
        w.start()
    for w in [*procs, *threads]:
        w.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs)
    record = json.loads((folder / "config.json").read_text())
    assert {k: record.get(k) for k in ("p0", "p1", "t0", "t1")} == {"p0": 40, "p1": 40, "t0": 40, "t1": 40}
    assert sorted(p.name for p in folder.iterdir()) == ["config.json"]  # no temporary file left behind


def test_a_reader_never_sees_a_partial_record(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path)
    stop = threading.Event()
    bad: list[str] = []

    def read() -> None:
        while not stop.is_set():
            try:
                json.loads((folder / "config.json").read_text())
            except json.JSONDecodeError as exc:
                bad.append(str(exc))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        _bump(str(folder), "n", 60)
    finally:
        stop.set()
        reader.join()
    assert bad == []


def test_a_failed_change_leaves_the_record_as_it_was(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path)
    before = (folder / "config.json").read_bytes()

    def refuse(record: dict) -> None:
        record["temperature"] = 2.0
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        update_config(folder, refuse)
    assert (folder / "config.json").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["config.json"]
