"""Model configs are typed and validated (errors name the field), the registry is cached until a config changes,
and committed configs hold no absolute machine path."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from medimg_demo.errors import ConfigError, ModelError
from medimg_demo.models import registry
from medimg_demo.models.config import ModelConfig
from medimg_demo.models.registry import get_model, list_models


def _good() -> dict:
    return {
        "id": "toy.v0", "task": "lung_ct", "arch": "test_efficientnet",
        "heads": {"type": ["a", "b"]},
        "input": {"size": [64, 64], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
        "weights": {"file": "weights.safetensors", "sha256": "0" * 64},
    }


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("heads", "type"), ["a"], "heads.type"),
        (("heads", "type"), ["a", "a"], "heads.type"),
        (("input", "size"), [64], "input.size"),
        (("input", "std"), [0.5, 0.0, 0.5], "input.std"),
        (("input", "interpolation"), "lanczos9", "input.interpolation"),
        (("weights", "sha256"), "abc", "weights.sha256"),
        (("weights", "file"), "../../etc/passwd.safetensors", "weights.file"),
        (("temperature",), {"type": -1}, "temperature.type"),
        (("id",), 7, "id"),
        (("input", "dicom_windows"), {"CT": [40, 0]}, "input.dicom_windows.CT"),
        (("lesion",), {"taps": []}, "lesion.taps"),
        (("lesion",), {"taps": [1, -2]}, "lesion.taps"),
        (("lesion",), {"taps": [1, 2], "threshold": 1.5}, "lesion.threshold"),
        (("lesion",), {"taps": [1, 2], "channels": 0}, "lesion.channels"),
    ],
)
def test_invalid_fields_are_named(path: tuple[str, ...], value: object, field: str) -> None:
    d = _good()
    target = d
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        ModelConfig.from_dict(d)


def test_lesion_block_is_read() -> None:
    d = _good()
    d["lesion"] = {"taps": [1, 2, 4, 6], "channels": 32, "threshold": 0.4}
    cfg = ModelConfig.from_dict(d)
    assert cfg.lesion is not None and cfg.lesion.taps == (1, 2, 4, 6) and cfg.lesion.channels == 32
    assert ModelConfig.from_dict(_good()).lesion is None


def test_missing_field_is_named() -> None:
    d = _good()
    del d["input"]
    with pytest.raises(ConfigError, match="'input' is missing"):
        ModelConfig.from_dict(d)
    assert issubclass(ConfigError, ModelError)  # the app shows it like any model error


def test_defaults_come_from_the_task_spec() -> None:
    cfg = ModelConfig.from_dict(_good())
    assert cfg.task_title == "Lung CT" and "stage" in cfg.data_source and "not a medical device" in cfg.intended_use
    assert cfg.target_layer == "features" and cfg.input.size == (64, 64)


def test_registry_is_cached_until_a_config_changes(tmp_path: Path, tiny_registry: Path, monkeypatch) -> None:
    root = tmp_path / "models"
    shutil.copytree(tiny_registry, root)
    calls = []
    real = registry._read
    monkeypatch.setattr(registry, "_read", lambda p: calls.append(p) or real(p))
    first = list_models(root)
    assert list_models(root) == first and len(calls) == 1  # second call: no file read
    cfg_path = root / "lung_ct.tiny_v0" / "config.json"
    d = json.loads(cfg_path.read_text())
    d["task_title"] = "Renamed"
    cfg_path.write_text(json.dumps(d))
    os.utime(cfg_path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert get_model(None, root).task_title == "Renamed" and len(calls) == 2
    shutil.copytree(root / "lung_ct.tiny_v0", root / "lung_ct.tiny_v1")
    assert {m.id for m in list_models(root)} == {"lung_ct.tiny_v0"} and len(calls) == 4  # same id in both: re-read
    shutil.rmtree(root / "lung_ct.tiny_v1")
    assert len(list_models(root)) == 1


def test_hub_snapshot_is_fetched_once_per_process(tiny_registry: Path, monkeypatch) -> None:
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **kw: calls.append(kw) or str(tiny_registry))
    monkeypatch.delenv("MEDIMG_MODELS_DIR", raising=False)
    monkeypatch.setenv("MEDIMG_HUB_REPO", "someone/once-only")
    registry.hub_models_dir.cache_clear()
    for _ in range(3):
        get_model()
    assert len(calls) == 1
    registry.hub_models_dir.cache_clear()


def test_committed_configs_hold_no_absolute_paths() -> None:
    for cfg in list_models():
        text = (cfg.folder / "config.json").read_text()
        for marker in ('"/', '":\\\\', "/work/", "/home/", "/tmp/"):
            assert marker not in text, (cfg.id, marker)
