"""Training options are written once: the ``train`` parser, the TrainConfig it fills and the command a model card
prints are all generated from the TrainConfig dataclass."""

from __future__ import annotations

import dataclasses
import re
import shlex

import pytest

from medimg_demo.cli import build_parser, train_config_from_args
from medimg_demo.errors import OptionError
from medimg_demo.learn.config import _RANGES, TrainConfig, portable_data_path, train_command
from medimg_demo.options import cli_fields, flag
from medimg_demo.paths import data_root


def _train_parser():  # noqa: ANN202
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "cmd")  # noqa: SLF001 - argparse keeps subparsers here
    return sub.choices["train"]


def test_every_cli_field_is_a_train_option() -> None:
    options = {s for a in _train_parser()._actions for s in a.option_strings}  # noqa: SLF001
    for f in cli_fields(TrainConfig):
        assert flag(f) in options, f.name
    assert {"--id", "--out", "--no-bf16", "--freeze-bn", "--select-bf16", "--no-stage"} <= options
    assert "--heads" not in options and "--default" not in options


def test_card_command_round_trips_any_configuration(tmp_path) -> None:
    (tmp_path / "manifest.csv").write_text("image,label,split\n")
    cfg = TrainConfig(task="breast_us", data=str(tmp_path), model_id="breast_us.x_v3", arch="tf_efficientnet_lite1",
                      size=240, epochs=7, lr_backbone=2e-4, freeze_bn=True, bf16=False, stage=False, drop_rate=0.3,
                      weight_decay=0.02, max_train=50, pretrained="offline", sam=0.05, reframe=0.5)
    line = train_command(dataclasses.asdict(cfg))
    args = build_parser().parse_args(shlex.split(line)[3:] + ["--data", str(tmp_path)])
    parsed = train_config_from_args(args)
    for f in dataclasses.fields(TrainConfig):
        if f.name not in ("data", "out_dir", "heads", "default"):
            assert getattr(parsed, f.name) == getattr(cfg, f.name), f.name


def test_saved_data_path_is_portable(tmp_path) -> None:
    assert portable_data_path(data_root() / "lung_ct") == "lung_ct"
    assert portable_data_path(tmp_path / "my_set") == "my_set"


@pytest.mark.parametrize(("name", "low", "high", "what"), _RANGES, ids=[r[0] for r in _RANGES])
def test_every_numeric_option_refuses_values_outside_its_range(name: str, low: float, high: float, what: str) -> None:
    needs = _NEEDS.get(name, {})
    TrainConfig(task="lung_ct", **{name: low, **needs}).check_options()  # the bounds themselves are allowed
    for bad in (low - 1 if isinstance(low, int) and not isinstance(low, bool) else low - 0.01,
                high + 1 if isinstance(high, int) else high * 1.01 + 0.01):
        with pytest.raises(OptionError, match=f"--{name.replace('_', '-')} .*give {re.escape(what)}"):
            TrainConfig(task="lung_ct", **{name: bad, **needs}).check_options()


#: Options that only mean something beside another one.
_NEEDS = {"lesion_channels": {"lesion": True}}


def test_a_lesion_head_width_needs_a_lesion_head() -> None:
    TrainConfig(task="breast_us").check_options()  # 0, the default: the start model's width, else 48
    with pytest.raises(OptionError, match="--lesion-channels .*add --lesion"):
        TrainConfig(task="breast_us", lesion_channels=32).check_options()
    TrainConfig(task="breast_us", lesion_channels=32, lesion=True).check_options()
