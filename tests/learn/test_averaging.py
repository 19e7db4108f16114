"""--ema-halflife: the weights scored, selected and saved are an exponential moving average of the fine-tuning steps."""

from __future__ import annotations

import json
import shlex

import pandas as pd
import pytest
import torch

from medimg_demo.cli import build_parser, train_config_from_args
from medimg_demo.errors import OptionError
from medimg_demo.learn.averaging import WeightAverage, ema_decay
from medimg_demo.learn.config import TrainConfig, train_command


def test_the_decay_halves_a_step_s_weight_after_the_half_life() -> None:
    d = ema_decay(2.0, 15)
    assert d ** 30 == pytest.approx(0.5)
    assert ema_decay(0.5, 15) < d < 1.0
    with pytest.raises(ValueError, match="half-life"):
        ema_decay(0.0, 15)


def test_the_average_follows_the_steps_by_the_decay_and_is_off_at_zero() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    off = WeightAverage(0.0, 10)
    off.start(model)
    off.update(model)
    assert off.average is None and off.judged(model) is model
    avg = WeightAverage(1.0, 4)  # decay 0.5 ** (1 / 4)
    assert avg.judged(model) is model  # nothing to judge before the average starts (the warm-up)
    avg.start(model)
    values = [1.0, 3.0, -2.0]
    for step, v in enumerate(values, start=1):
        with torch.no_grad():
            model[0].weight.fill_(v)
            model[1].running_mean.fill_(10 * v)
            model[1].num_batches_tracked.fill_(100 + step)
        avg.update(model)
    expected = 1.0  # the first step is taken as it is, then each one weighs (1 - decay)
    for v in values[1:]:
        expected = avg.decay * expected + (1 - avg.decay) * v
    judged = avg.judged(model)
    assert judged is not model
    assert float(judged[0].weight.detach()) == pytest.approx(expected)
    assert float(judged[1].running_mean) == pytest.approx(10 * expected)  # float buffers are averaged too
    assert int(judged[1].num_batches_tracked) == 103  # a counter is copied, not averaged
    assert not any(p.requires_grad for p in judged.parameters())
    assert float(model[0].weight.detach()) == -2.0  # the model trained on is left as it is


def test_the_option_is_checked_and_reproduced_by_the_card_command(tmp_path) -> None:
    with pytest.raises(OptionError, match="--ema-halflife"):
        TrainConfig(task="lung_ct", ema_halflife=-1).check_options()
    (tmp_path / "manifest.csv").write_text("image,label,split\n")
    line = train_command({**TrainConfig(task="lung_ct", ema_halflife=1.5).__dict__})
    assert "--ema-halflife 1.5" in line
    parsed = train_config_from_args(build_parser().parse_args(shlex.split(line)[3:] + ["--data", str(tmp_path)]))
    assert parsed.ema_halflife == 1.5
    assert "--ema-halflife" not in train_command({**TrainConfig(task="lung_ct").__dict__})  # records before the option


def _toy_training(tmp_path, monkeypatch, **over):  # noqa: ANN001, ANN202
    """Train on the toy set with the averaging and val scoring recorded: (config, [(average, model)], [scored])."""
    from conftest import two_class_set
    from medimg_demo.learn import train as train_module

    seen: list[tuple[WeightAverage, torch.nn.Module]] = []
    scored: list[torch.nn.Module] = []

    class Recorded(WeightAverage):
        def update(self, model: torch.nn.Module) -> None:
            super().update(model)
            seen[:] = [(self, model)]

    def recording_predict(model, *args, **kwargs):  # noqa: ANN001, ANN202
        scored.append(model)
        return predict_logits(model, *args, **kwargs)

    from medimg_demo.learn.dataset import predict_logits

    monkeypatch.setattr(train_module, "WeightAverage", Recorded)
    monkeypatch.setattr(train_module, "predict_logits", recording_predict)
    data = tmp_path / "toy"
    if not data.exists():
        two_class_set(data, 12)
    options = dict(data=str(data), task="toy", out_dir=str(tmp_path / "models"), pretrained="offline", size=48,
                   epochs=1, warmup_epochs=1, batch_size=8, seed=0, lr_backbone=1e-2, patience=10)
    mc = train_module.train(TrainConfig(**{**options, **over}))
    return mc, seen, scored


@pytest.mark.slow
def test_training_scores_and_saves_the_average_not_the_last_step(tmp_path, monkeypatch) -> None:
    """A warm-up epoch, then one fine-tuning epoch: the average covers only the fine-tuning steps; val scores the
    average; the weights written are the average's (fp16), which differ from the last step's; off, nothing is averaged."""
    from safetensors.torch import load_file

    from medimg_demo.eval.card import render

    mc, seen, scored = _toy_training(tmp_path, monkeypatch, model_id="toy.ema_v0", ema_halflife=0.5)
    (average, model), = seen
    assert average.average is not None and int(average.average.n_averaged) == 3  # 24 images in batches of 8, once
    assert scored[0] is model and scored[1] is average.judged(model)  # warm-up: the model; then the average
    saved = load_file(str(mc.weights_path))
    averaged, last = average.judged(model).state_dict(), model.state_dict()
    floats = [k for k in saved if saved[k].is_floating_point()]
    moved = [k for k in floats if not torch.equal(averaged[k].half(), last[k].half())]
    assert any("running_mean" in k for k in moved) and any(k.endswith("weight") for k in moved)
    for k in saved:
        assert torch.equal(saved[k], averaged[k].half() if k in floats else averaged[k]), k
        if k.endswith("num_batches_tracked"):
            assert torch.equal(averaged[k], last[k]), k  # counters copied
    record = json.loads((mc.folder / "config.json").read_text())
    assert record["training"]["ema_halflife"] == 0.5
    metrics = pd.DataFrame([{"metric": "accuracy", "class": "", "value": 0.5, "ci_low": 0.4, "ci_high": 0.6}])
    assert "- Weights averaged (`--ema-halflife 0.5`)" in render(mc, metrics, "test", 8, "python -m medimg_demo evaluate")

    off, seen, scored = _toy_training(tmp_path, monkeypatch, model_id="toy.ema_off")
    (average, model), = seen
    assert average.average is None and all(m is model for m in scored[:2])
    assert "Weights averaged" not in render(off, metrics, "test", 8, "python -m medimg_demo evaluate")


def test_averaging_without_fine_tuning_is_refused() -> None:
    with pytest.raises(OptionError, match="--epochs 0"):
        TrainConfig(task="lung_ct", epochs=0, warmup_epochs=2, ema_halflife=1).check_options()
