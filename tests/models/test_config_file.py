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


def test_a_rewritten_record_keeps_the_file_s_permissions(tmp_path: Path) -> None:
    """The temporary file is created 0600: moved in as it is, it would narrow a group-writable config.json (or
    widen a private one, with a fixed mode)."""
    folder = _model_folder(tmp_path)
    for mode in (0o600, 0o664):
        (folder / "config.json").chmod(mode)
        update_config(folder, lambda r: r.__setitem__("n", mode))
        assert (folder / "config.json").stat().st_mode & 0o777 == mode


def test_a_pinned_file_and_its_pin_change_together(tmp_path: Path) -> None:
    """Two writers put a pinned file in place and pin its hash, while a third checks, under the same lock, that the
    file matches its pin. With the file moved outside the locked change (as the gate fit did), the check sees a
    file and a pin of two different writers (and a model in that state fails to load)."""
    import hashlib

    from medimg_demo.models.config_file import replace_keeping_mode, temporary_beside

    folder = _model_folder(tmp_path)
    final = folder / "gate.safetensors"
    mismatches: list[int] = []
    done = threading.Event()

    def fit(tag: str) -> None:
        for i in range(40):
            tmp = temporary_beside(final)
            data = f"{tag}{i}".encode() * 1000

            def pin(record: dict) -> None:
                tmp.write_bytes(data)
                record["gate"] = {"sha256": hashlib.sha256(data).hexdigest()}
                replace_keeping_mode(tmp, final)

            update_config(folder, pin)

    def check(record: dict) -> None:
        if "gate" in record and record["gate"]["sha256"] != hashlib.sha256(final.read_bytes()).hexdigest():
            mismatches.append(1)

    def checker() -> None:
        while not done.is_set():
            update_config(folder, check)

    threads = [threading.Thread(target=fit, args=(t,)) for t in "ab"]
    watch = threading.Thread(target=checker)
    watch.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    watch.join()
    update_config(folder, check)
    assert mismatches == []
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "gate.safetensors"]
