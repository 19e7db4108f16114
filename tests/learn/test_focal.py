"""--focal-gamma: the type heads' focal loss (Lin et al., 2017), which weights each image's cross-entropy by
(1 - p_true) ** gamma; gamma 0 is the plain cross-entropy."""

from __future__ import annotations

import shlex

import pytest
import torch
import torch.nn.functional as F

from medimg_demo.cli import build_parser, train_config_from_args
from medimg_demo.errors import OptionError
from medimg_demo.learn.config import TrainConfig, train_command
from medimg_demo.learn.losses import type_loss


def test_gamma_zero_is_the_weighted_label_smoothed_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(12, 4, generator=g), torch.randint(0, 4, (12,), generator=g)
    w = torch.tensor([0.5, 2.0, 1.0, 3.0])
    assert float(type_loss(z, y, w, 0.05, 0.0)) == pytest.approx(float(F.cross_entropy(z, y, weight=w, label_smoothing=0.05)))


def test_focal_loss_matches_its_formula_and_spares_confident_right_calls() -> None:
    z = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 5.0]])
    y = torch.tensor([0, 0, 1])  # confident and right; unsure; confident and wrong
    p = torch.softmax(z, 1)[torch.arange(3), y]
    ce = -torch.log(p)
    w = torch.tensor([1.0, 2.0, 1.0])
    expected = ((1 - p) ** 3 * ce * w[y]).sum() / w[y].sum()
    assert float(type_loss(z, y, w, 0.0, 3.0)) == pytest.approx(float(expected), rel=1e-5)
    per = [float(type_loss(z[i:i + 1], y[i:i + 1], None, 0.0, 3.0)) for i in range(3)]
    ce_each = [float(v) for v in ce]
    assert per[0] < 0.01 * ce_each[0]  # the easy image nearly drops out
    assert per[2] > 0.9 * ce_each[2]  # the confidently wrong one keeps almost all of its loss


def test_the_option_is_checked_and_reproduced_by_the_card_command(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(OptionError, match="focusing"):
        TrainConfig(task="lung_ct", focal_gamma=-1).check_options()
    line = train_command({**TrainConfig(task="lung_ct", focal_gamma=3.0, label_smoothing=0.0).__dict__})
    assert "--focal-gamma 3.0" in line and "--label-smoothing 0.0" in line
    (tmp_path / "manifest.csv").write_text("image,label,split\n")
    parsed = train_config_from_args(build_parser().parse_args(shlex.split(line)[3:] + ["--data", str(tmp_path)]))
    assert parsed.focal_gamma == 3.0 and parsed.label_smoothing == 0.0
    assert "--focal-gamma" not in train_command({**TrainConfig(task="lung_ct").__dict__})


@pytest.mark.slow
def test_training_uses_the_focal_loss_and_records_it(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """The trainer hands --focal-gamma and --label-smoothing to every type-head loss and saves them in the record."""
    import json

    from conftest import two_class_set
    from medimg_demo.learn import batch_loss as loss_module
    from medimg_demo.learn import train as train_module

    seen: list[tuple[float, float]] = []

    def recording_loss(logits, target, weight=None, label_smoothing=0.0, gamma=0.0):  # noqa: ANN001, ANN202
        seen.append((label_smoothing, gamma))
        return type_loss(logits, target, weight, label_smoothing, gamma)

    monkeypatch.setattr(loss_module, "type_loss", recording_loss)
    two_class_set(tmp_path / "toy", 12)
    mc = train_module.train(TrainConfig(data=str(tmp_path / "toy"), task="toy", out_dir=str(tmp_path / "models"),
                                        pretrained="offline", size=48, epochs=1, warmup_epochs=1, batch_size=8, seed=0,
                                        model_id="toy.focal_v0", focal_gamma=2.5, label_smoothing=0.0))
    assert seen and set(seen) == {(0.0, 2.5)}
    record = json.loads((mc.folder / "config.json").read_text())["training"]
    assert record["focal_gamma"] == 2.5 and "--focal-gamma 2.5" in train_command(record)
