"""The gate's pin records the calibration its thresholds were chosen under: the logit scores keep that temperature,
a model recalibrated since says its abstention threshold is stale, and a fit during which the calibration changed
pins nothing. The model card is rewritten under the folder's lock, in one step."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medimg_demo.errors import ModelError
from medimg_demo.models.config import ModelConfig
from medimg_demo.models.config_file import folder_locked, update_config
from medimg_demo.models.gate import calibration_state, fit_stats, load_gate, save_stats, stale_reason


def _load(folder: Path) -> ModelConfig:
    return ModelConfig.from_dict(json.loads((folder / "config.json").read_text()), folder)


@pytest.fixture()
def model_folder(tmp_path: Path, tiny_registry: Path) -> Path:
    root = tmp_path / "models"
    shutil.copytree(tiny_registry, root)
    folder = next(p.parent for p in root.glob("*/config.json"))
    update_config(folder, lambda r: r.__setitem__("temperature", {"type": 0.5}))
    return folder


def _pin_energy_gate(folder: Path, with_record: bool = True) -> ModelConfig:
    """An energy gate (a logit score, so its temperature matters) pinned as the gate fit pins it."""
    cfg = _load(folder)
    stats = fit_stats("energy", np.zeros((4, 8)), np.zeros(4, dtype=int), temperature=cfg.gate_temperature)
    sha = save_stats(stats, folder / "gate.safetensors")
    entry = {"file": "gate.safetensors", "sha256": sha, "method": "energy", "threshold": -1.0, "abstain_below": 0.5, "k": 10}
    if with_record:
        entry |= {"score_temperature": cfg.gate_temperature, "fitted_under": calibration_state(cfg.raw)}
    update_config(folder, lambda r: r.__setitem__("gate", entry))
    return _load(folder)


LOGITS = np.array([[2.0, -1.0, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4]])


def test_a_recalibrated_model_keeps_its_gate_score_and_says_the_threshold_is_stale(model_folder: Path, caplog) -> None:
    cfg = _pin_energy_gate(model_folder)
    assert stale_reason(cfg) is None
    with caplog.at_level(logging.WARNING, logger="medimg_demo.models.gate"):
        before = load_gate(cfg).score(np.zeros((2, 8)), LOGITS)
    assert not caplog.records
    update_config(model_folder, lambda r: r.__setitem__("temperature", {"type": 2.0}))  # calibrate --write
    cfg = _load(model_folder)
    assert cfg.gate_temperature == 2.0
    with caplog.at_level(logging.WARNING, logger="medimg_demo.models.gate"):
        after = load_gate(cfg).score(np.zeros((2, 8)), LOGITS)
    np.testing.assert_allclose(after, before)  # the threshold was chosen on scores at 0.5: they stay at 0.5
    assert "fitted under another calibration" in caplog.text and f"gate --model {cfg.id}" in caplog.text
    # a BCTS bias added later is a change of calibration too; an older pin without the record cannot tell
    update_config(model_folder, lambda r: r.update({"temperature": {"type": 0.5}, "bias": {"type": [0.1, 0, 0, -0.1]}}))
    assert stale_reason(_load(model_folder)) is not None
    assert stale_reason(_pin_energy_gate(model_folder, with_record=False)) is None
    update_config(model_folder, lambda r: r["gate"].__setitem__("score_temperature", float("nan")))
    with pytest.raises(ModelError, match="score_temperature"):
        load_gate(_load(model_folder))


def _report():
    from medimg_demo.eval.gate_report import GateReport

    return GateReport(method="energy", threshold=-1.0, abstain_below=0.5, ood=pd.DataFrame(), selective=pd.DataFrame())


def test_a_gate_fit_pins_nothing_when_the_calibration_changed_while_it_ran(model_folder: Path) -> None:
    from medimg_demo.eval.gate_report import _write

    cfg = _load(model_folder)  # what the fit read when it started
    stats = fit_stats("energy", np.zeros((4, 8)), np.zeros(4, dtype=int), temperature=cfg.gate_temperature)
    update_config(model_folder, lambda r: r.__setitem__("temperature", {"type": 1.7}))  # calibrate --write meanwhile
    record = (model_folder / "config.json").read_text()
    with pytest.raises(ModelError, match="changed while its gate was being fitted"):
        _write(cfg, _report(), stats)
    assert (model_folder / "config.json").read_text() == record
    assert not (model_folder / "gate.safetensors").exists()
    assert not list(model_folder.glob(".*.tmp"))
    # the same fit against an unchanged calibration pins the gate with what it was fitted under
    cfg = _load(model_folder)
    _write(cfg, _report(), fit_stats("energy", np.zeros((4, 8)), np.zeros(4, dtype=int), temperature=cfg.gate_temperature))
    pinned = _load(model_folder)
    gate = pinned.raw["gate"]
    assert gate["fitted_under"] == calibration_state(pinned.raw) and gate["score_temperature"] == 1.7
    assert stale_reason(pinned) is None and load_gate(pinned) is not None


def test_the_card_is_rewritten_under_the_folder_lock_and_in_one_step(model_folder: Path) -> None:
    """The gate fit's figures and card section: written while it holds the folder's lock (after another writer's
    turn), the section before Reproduce, the card's mode kept."""
    from medimg_demo.eval.card import GATE_START
    from medimg_demo.eval.gate_report import GateReport, _write

    card = model_folder / "MODEL_CARD.md"
    card.write_text("# Card\n\n## Reproduce\nrun it\n")
    card.chmod(0o640)
    ood = pd.DataFrame([{"split": s, "method": "energy", "set": name, "n": 3, "auroc": 0.9, "fpr_at_95_tpr": 0.1,
                         "refused": 0.5} for s in ("val", "test") for name in ("all OOD", "in-distribution")])
    selective = pd.DataFrame([{"split": "val", "plain_accuracy": 0.9, "refused": 0.0, "indeterminate": 0.1,
                               "coverage": 0.9, "selective_accuracy": 0.95}])
    report = GateReport(method="energy", threshold=-1.0, abstain_below=0.5, ood=ood, selective=selective)
    cfg = _load(model_folder)
    stats = fit_stats("energy", np.zeros((4, 8)), np.zeros(4, dtype=int), temperature=cfg.gate_temperature)
    done = threading.Event()
    with folder_locked(model_folder):  # another writer of this folder holds it
        worker = threading.Thread(target=lambda: (_write(cfg, report, stats), done.set()))
        worker.start()
        time.sleep(0.3)
        assert not done.is_set() and GATE_START not in card.read_text()
    worker.join(10)
    assert done.is_set()
    text = card.read_text()
    assert text.index(GATE_START) < text.index("## Reproduce") and text.startswith("# Card")
    assert "| energy | 0.9000 |" in text and (model_folder / "metrics" / "selective.csv").is_file()
    assert card.stat().st_mode & 0o777 == 0o640 and not list(model_folder.glob(".*.tmp"))


def test_a_card_is_not_written_for_weights_the_folder_no_longer_holds(model_folder: Path, tmp_path: Path) -> None:
    """evaluate --card on a model that `train --replace` swapped meanwhile: neither the card nor the figures of the
    evaluated weights may land beside the new ones."""
    from medimg_demo.eval.card import write

    cfg = _load(model_folder)
    results = tmp_path / "results"
    results.mkdir()
    pd.DataFrame([{"metric": "accuracy", "class": "", "value": 0.5, "ci_low": 0.4, "ci_high": 0.6}]).to_csv(
        results / "metrics.csv", index=False)
    update_config(model_folder, lambda r: r["weights"].__setitem__("sha256", "e" * 64))  # another run's weights
    with pytest.raises(ModelError, match="other weights than the ones this command read"):
        write(cfg, pd.read_csv(results / "metrics.csv"), "test", 10, "python -m medimg_demo evaluate", results=results)
    assert not (model_folder / "MODEL_CARD.md").exists() and not (model_folder / "metrics" / "metrics.csv").exists()
