"""A training run writes its model folder aside and moves it into place when finished: an existing model is
replaced only when asked, whole, and never half-way through a run."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
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
    with pytest.raises(OptionError, match="already holds a model.*--out runs/reproduce.*--replace"):
        refuse_replacing(out, replace=False)
    refuse_replacing(out, replace=True)
    refuse_replacing(tmp_path / "models" / "new_v0", replace=False)
    work = work_folder(out)
    assert work.parent == out.parent and work.name.startswith(".lung_ct.x_v2.training-")
    assert work.stat().st_mode & 0o777 == out.parent.stat().st_mode & 0o777
    (work / "config.json").write_text('{"id": "new"}')
    (work / "weights.safetensors").write_text("new weights")
    assert (out / "weights.safetensors").read_text() == "old weights"  # the run is writing: the old model is whole
    install(work, out, replace=True)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "weights.safetensors"]  # no old gate or card
    assert json.loads((out / "config.json").read_text())["id"] == "new"
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no work or replaced folder left


def test_a_folder_made_meanwhile_is_not_replaced_and_the_finished_run_is_kept(tmp_path: Path) -> None:
    out = tmp_path / "m" / "toy_v0"
    work = work_folder(out)
    (work / "config.json").write_text('{"id": "mine"}')
    _old_model(out)  # another run finished first
    with pytest.raises(OptionError, match="finished model is in"):
        install(work, out, replace=False)
    assert (out / "weights.safetensors").read_text() == "old weights"
    kept = [p for p in out.parent.iterdir() if ".finished-" in p.name]
    assert len(kept) == 1 and json.loads((kept[0] / "config.json").read_text())["id"] == "mine"
    empty = tmp_path / "m" / "empty_v0"
    empty.mkdir()
    refuse_replacing(empty, replace=False)  # an empty folder holds nothing to lose
    install(work_folder(empty), empty, replace=False)
    assert empty.is_dir()


def test_work_folders_of_stopped_runs_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    out = tmp_path / "toy_v0"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".toy_v0.training-{int(gone.stdout)}-abc"
    live = tmp_path / f".toy_v0.training-{model_folder.os.getppid()}-def"
    other = tmp_path / f".other_v0.training-{int(gone.stdout)}-ghi"
    for d in (dead, live, other):
        d.mkdir()
        (d / "weights.safetensors").write_text("partial")
    work = work_folder(out)
    assert not dead.exists() and live.exists() and other.exists() and work.exists()


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

    def watching(work: Path, final: Path, replace: bool) -> None:
        seen.append(((final / "weights.safetensors").read_text(), (work / "weights.safetensors").is_file()))
        real(work, final, replace)

    monkeypatch.setattr(train_module, "install", watching)
    mc = train(TrainConfig(data=str(data), task="toy", model_id="toy.lite0_v0", out_dir=str(tmp_path / "models"),
                           pretrained="none", size=32, epochs=1, warmup_epochs=0, batch_size=4, replace=True))
    assert seen == [("old weights", True)] and mc.folder == out
    assert not (out / "gate.safetensors").exists() and (out / "training_log.csv").is_file()
    assert "replace" not in json.loads((out / "config.json").read_text())["training"]
    assert [p.name for p in out.parent.iterdir()] == [out.name]
