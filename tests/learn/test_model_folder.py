"""A training run writes its model folder aside and moves it into place when finished: an existing model is
replaced only when asked, whole, and never half-way through a run."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import two_class_set
from medimg_demo.errors import OptionError
from medimg_demo.learn import model_folder
from medimg_demo.learn.model_folder import install, refuse_replacing, work_folder


def _old_model(out: Path) -> None:
    out.mkdir(parents=True)
    for name, text in {"config.json": '{"id": "old"}', "weights.safetensors": "old weights",
                       "gate.safetensors": "old gate", "MODEL_CARD.md": "old card"}.items():
        (out / name).write_text(text)


def test_a_model_folder_is_replaced_only_when_asked_and_whole(tmp_path: Path) -> None:
    out = tmp_path / "models" / "lung_ct.x_v2"
    _old_model(out)
    with pytest.raises(OptionError, match="already holds a model.*--out DIR.*runs/reproduce/<id>.*--replace"):
        refuse_replacing(out, replace=False)
    refuse_replacing(out, replace=True)
    refuse_replacing(tmp_path / "models" / "new_v0", replace=False)
    work, held = work_folder(out)
    assert work.parent == out.parent and work.name.startswith(".lung_ct.x_v2.training-")
    assert work.stat().st_mode & 0o777 == out.parent.stat().st_mode & 0o777
    (work / "config.json").write_text('{"id": "new"}')
    (work / "weights.safetensors").write_text("new weights")
    assert (out / "weights.safetensors").read_text() == "old weights"  # the run is writing: the old model is whole
    install(work, out, replace=True, held=held)
    assert held.closed and not list(out.parent.glob("*.lock"))
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "weights.safetensors"]  # no old gate or card
    assert json.loads((out / "config.json").read_text())["id"] == "new"
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no work or replaced folder left


def test_a_folder_made_meanwhile_is_not_replaced_and_the_finished_run_is_kept(tmp_path: Path) -> None:
    out = tmp_path / "m" / "toy_v0"
    work, held = work_folder(out)
    (work / "config.json").write_text('{"id": "mine"}')
    _old_model(out)  # another run finished first
    with pytest.raises(OptionError, match="finished model is in"):
        install(work, out, replace=False, held=held)
    assert held.closed and (out / "weights.safetensors").read_text() == "old weights"
    kept = [p for p in out.parent.iterdir() if ".finished-" in p.name]
    assert len(kept) == 1 and json.loads((kept[0] / "config.json").read_text())["id"] == "mine"
    empty = tmp_path / "m" / "empty_v0"
    empty.mkdir()
    refuse_replacing(empty, replace=False)  # an empty folder holds nothing to lose
    work, held = work_folder(empty)
    install(work, empty, replace=False, held=held)
    assert empty.is_dir()


def test_work_folders_of_stopped_runs_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    """A run holds its work folder's lock for its life, wherever it runs: a folder whose lock is free was left by a
    run that stopped (killed, failed) and goes; a held one stays, whatever the process ids say."""
    out = tmp_path / "toy_v0"
    stopped, held = work_folder(out)
    (stopped / "weights.safetensors").write_text("partial")
    held.close()  # the run ended without installing (killed, or it raised)
    live, live_held = work_folder(out)
    child = subprocess.Popen([sys.executable, "-c", f"""
import fcntl, sys, time
fh = open({str(tmp_path / ".toy_v0.training-elsewhere.lock")!r}, "a")
fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(30)
"""], stdout=subprocess.PIPE, text=True)
    elsewhere = tmp_path / ".toy_v0.training-elsewhere"
    try:
        elsewhere.mkdir()
        assert child.stdout.readline().strip() == "held"  # another process's run, alive
        unmarked = tmp_path / ".toy_v0.training-unmarked"  # no lock file: not known to be a run's, left alone
        unmarked.mkdir()
        other = tmp_path / ".other_v0.training-x"
        other.mkdir()
        (tmp_path / ".other_v0.training-x.lock").touch()
        work, mine = work_folder(out)
        assert not stopped.exists() and live.exists() and elsewhere.exists() and unmarked.exists() and other.exists()
        assert work.exists()
    finally:
        child.kill()
        child.wait()
    live_held.close()
    mine.close()
    work_folder(out)[1].close()
    assert not live.exists() and not elsewhere.exists() and not work.exists()


def test_a_writer_waiting_on_a_replaced_folder_locks_the_new_one(tmp_path: Path) -> None:
    """A config.json change queued on the folder's lock while a run swaps the folder in must not go to the new
    folder under the old folder's lock, and a change computed for the old weights must not land at all."""
    import threading

    from medimg_demo.errors import ModelError
    from medimg_demo.models.config_file import folder_locked, update_config

    out = tmp_path / "models" / "m_v0"
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps({"id": "m", "weights": {"sha256": "old"}, "log": []}))
    work, held = work_folder(out)
    (work / "config.json").write_text(json.dumps({"id": "m", "weights": {"sha256": "new"}, "log": []}))
    inside, release = threading.Event(), threading.Event()

    def slow(record: dict) -> None:
        inside.set()
        release.wait(10)
        record["log"].append("slow")

    writers = [threading.Thread(target=update_config, args=(out, slow)),
               threading.Thread(target=update_config, args=(out, lambda r: r["log"].append("quick")))]
    with folder_locked(out):  # install's swap, under the lock, while a writer queues on the old folder
        writers[0].start()
        time.sleep(0.2)
        if not model_folder._exchange(work, out):  # a file system without the one-step swap: install's two renames
            old = tmp_path / "models" / ".m_v0.replaced-x"
            out.rename(old)
            work.rename(out)
            work = old
    shutil.rmtree(work)
    held.close()
    assert inside.wait(10)
    writers[1].start()  # a second writer, after the swap: it must wait for the first
    time.sleep(0.3)
    release.set()
    for w in writers:
        w.join(10)
    assert sorted(json.loads((out / "config.json").read_text())["log"]) == ["quick", "slow"]
    with pytest.raises(ModelError, match="other weights"):
        update_config(out, lambda r: r.__setitem__("temperature", {"type": 9.0}), weights_sha256="old")
    assert "temperature" not in json.loads((out / "config.json").read_text())


def test_the_registry_skips_hidden_work_folders(tmp_path: Path, tiny_registry: Path) -> None:
    from medimg_demo.models.registry import list_models

    root = tmp_path / "models"
    shutil.copytree(tiny_registry, root)
    folder = next(p for p in root.iterdir() if p.is_dir())
    shutil.copytree(folder, root / f".{folder.name}.training-1-x")
    assert [m.id for m in list_models(root)] == [folder.name]


def test_training_into_a_served_model_is_refused_before_any_work(tmp_path: Path, monkeypatch) -> None:
    from medimg_demo.cli import main
    from medimg_demo.learn import train as train_module

    data = tmp_path / "toy"
    two_class_set(data, 4)
    out = tmp_path / "models" / "toy.lite0_v0"
    _old_model(out)
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()}
    monkeypatch.setattr(train_module, "read_manifest", lambda *a: pytest.fail("decoded before refusing"))
    code = main(["train", "--task", "toy", "--data", str(data), "--id", "toy.lite0_v0", "--out", str(tmp_path / "models"),
                 "--pretrained", "none", "--epochs", "1"])
    assert code == 2
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()} == digest


def test_a_replacing_run_leaves_the_old_model_whole_until_it_ends(tmp_path: Path, monkeypatch) -> None:
    from medimg_demo.learn import train as train_module
    from medimg_demo.learn.train import TrainConfig, train

    data = tmp_path / "toy"
    two_class_set(data, 6)
    out = tmp_path / "models" / "toy.lite0_v0"
    _old_model(out)
    seen = []
    real = train_module.install

    def watching(work: Path, final: Path, replace: bool, held) -> None:  # noqa: ANN001
        seen.append(((final / "weights.safetensors").read_text(), (work / "weights.safetensors").is_file()))
        real(work, final, replace, held)

    monkeypatch.setattr(train_module, "install", watching)
    mc = train(TrainConfig(data=str(data), task="toy", model_id="toy.lite0_v0", out_dir=str(tmp_path / "models"),
                           pretrained="none", size=32, epochs=1, warmup_epochs=0, batch_size=4, replace=True))
    assert seen == [("old weights", True)] and mc.folder == out
    assert not (out / "gate.safetensors").exists() and (out / "training_log.csv").is_file()
    for name in ("weights.safetensors", "config.json"):  # readable by an app running as another user, as the folder
        assert (out / name).stat().st_mode & 0o777 == out.parent.stat().st_mode & 0o666, name
    assert "replace" not in json.loads((out / "config.json").read_text())["training"]
    assert [p.name for p in out.parent.iterdir()] == [out.name]


def test_a_cards_start_model_is_the_bundled_one_even_after_rebuilding_it(tmp_path: Path, tiny_registry: Path,
                                                                          monkeypatch) -> None:
    """Each card rebuilds into runs/reproduce/<id>: a start model rebuilt by its own card (never the same bytes)
    does not stand in the way of the next card's --init-from, which names the bundled model."""
    from medimg_demo.eval.card_training import reproduce_dir
    from medimg_demo.learn.start import start_model

    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(tiny_registry))
    start_id = next(p.name for p in tiny_registry.iterdir() if p.is_dir())
    rebuilt = tmp_path / reproduce_dir(start_id) / start_id
    shutil.copytree(tiny_registry / start_id, rebuilt)
    record = json.loads((rebuilt / "config.json").read_text())
    record["weights"]["sha256"] = "f" * 64  # a rerun: other bytes
    (rebuilt / "config.json").write_text(json.dumps(record))
    bundled = json.loads((tiny_registry / start_id / "config.json").read_text())["weights"]["sha256"]
    assert start_model(start_id, tmp_path / reproduce_dir("next_v1")).weights_sha256 == bundled
    with pytest.raises(OptionError, match="hold different models"):  # one shared folder would have refused
        start_model(start_id, tmp_path / reproduce_dir(start_id))


def test_a_run_that_raises_removes_its_work_folder_and_a_run_that_cannot_be_installed_is_kept(
        tmp_path: Path, monkeypatch) -> None:
    import errno
    import os

    from medimg_demo.learn.model_folder import cleans_up

    out = tmp_path / "models" / "toy_v0"

    @cleans_up
    def failing() -> None:
        work, _ = work_folder(out)
        (work / "weights.safetensors").write_text("epoch 3")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        failing()
    assert list((tmp_path / "models").iterdir()) == []  # no work folder, no lock file
    _old_model(out)
    work, held = work_folder(out)
    (work / "config.json").write_text('{"id": "finished"}')
    real_rename = os.rename

    def cross_device(src, dst, *args, **kwargs):  # noqa: ANN001, ANN202
        if Path(src) == work:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", cross_device)
    monkeypatch.setattr(model_folder, "_exchange", lambda a, b: False)
    with pytest.raises(OptionError, match="could not be replaced.*finished model is in"):
        install(work, out, replace=True, held=held)
    assert (out / "weights.safetensors").read_text() == "old weights" and held.closed
    kept = [p for p in out.parent.iterdir() if ".finished-" in p.name]
    assert len(kept) == 1 and json.loads((kept[0] / "config.json").read_text())["id"] == "finished"
    assert not [p for p in out.parent.iterdir() if ".replaced-" in p.name or ".training-" in p.name]
