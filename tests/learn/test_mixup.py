"""--mixup: training batches become convex mixes of two images, and each head's loss the same mix of the losses
against both labels (Zhang et al., 2018); off by default, and then nothing random is drawn."""

from __future__ import annotations

import shlex

import pytest
import torch
import torch.nn.functional as F

from medimg_demo.cli import build_parser, train_config_from_args
from medimg_demo.errors import OptionError
from medimg_demo.learn.config import TrainConfig, train_command
from medimg_demo.learn.mixup import Mix, Mixup, mixed_loss


def test_off_leaves_the_batch_and_every_generator_untouched() -> None:
    torch.manual_seed(3)
    x = torch.randn(4, 3, 8, 8)
    state = torch.get_rng_state()
    out, mix = Mixup(0.0, seed=0)(x)
    assert out is x and mix is None
    assert torch.equal(torch.get_rng_state(), state)
    assert Mixup(0.4, seed=0)(x[:1])[1] is None  # one image has no partner


def test_a_mixed_batch_is_the_convex_mix_its_record_says_and_repeats_with_the_seed() -> None:
    x = torch.randn(6, 1, 4, 4)
    out, mix = Mixup(0.4, seed=7)(x)
    assert mix is not None and 0.0 <= mix.lam <= 1.0
    assert sorted(mix.perm.tolist()) == list(range(6))
    assert torch.allclose(out, mix.lam * x + (1 - mix.lam) * x[mix.perm])
    again = Mixup(0.4, seed=7)(x)[1]
    assert again is not None and again.lam == mix.lam and torch.equal(again.perm, mix.perm)
    assert Mixup(0.4, seed=8)(x)[1] != mix  # another seed, another mix
    with pytest.raises(ValueError, match="alpha"):
        Mixup(-1.0, seed=0)


def test_the_loss_is_the_same_mix_of_both_labels_losses() -> None:
    g = torch.Generator().manual_seed(1)
    z, y = torch.randn(5, 3, generator=g), torch.tensor([0, 1, 2, 1, 0])
    mix = Mix(0.3, torch.tensor([4, 3, 2, 1, 0]))
    got = mixed_loss(lambda t: F.cross_entropy(z, t), y, mix)
    assert float(got) == pytest.approx(0.3 * float(F.cross_entropy(z, y)) + 0.7 * float(F.cross_entropy(z, y[mix.perm])))
    assert float(mixed_loss(lambda t: F.cross_entropy(z, t), y, None)) == pytest.approx(float(F.cross_entropy(z, y)))


def test_the_option_is_checked_and_reproduced_by_the_card_command(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(OptionError, match="alpha"):
        TrainConfig(task="lung_ct", mixup=-0.1).check_options()
    with pytest.raises(OptionError, match="--lesion"):
        TrainConfig(task="breast_us", mixup=0.2, lesion=True).check_options()
    with pytest.raises(OptionError, match="--distill-from"):
        TrainConfig(task="lung_ct", mixup=0.2, distill_from="lung_ct.t0", distill_weight=1.0).check_options()
    line = train_command({**TrainConfig(task="lung_ct", mixup=0.2).__dict__})
    assert "--mixup 0.2" in line
    (tmp_path / "manifest.csv").write_text("image,label,split\n")
    parsed = train_config_from_args(build_parser().parse_args(shlex.split(line)[3:] + ["--data", str(tmp_path)]))
    assert parsed.mixup == 0.2
    assert "--mixup" not in train_command({**TrainConfig(task="lung_ct").__dict__})


@pytest.mark.slow
def test_training_mixes_every_batch_and_records_the_option(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import json

    from conftest import two_class_set
    from medimg_demo.learn import batch_loss as loss_module
    from medimg_demo.learn import train as train_module

    mixes: list[Mix | None] = []

    def recording(loss, target, mix):  # noqa: ANN001, ANN202
        mixes.append(mix)
        return mixed_loss(loss, target, mix)

    monkeypatch.setattr(loss_module, "mixed_loss", recording)
    two_class_set(tmp_path / "toy", 12)
    mc = train_module.train(TrainConfig(data=str(tmp_path / "toy"), task="toy", out_dir=str(tmp_path / "models"),
                                        pretrained="offline", size=48, epochs=1, warmup_epochs=1, batch_size=8, seed=0,
                                        model_id="toy.mixup_v0", mixup=0.4))
    assert mixes and all(m is not None for m in mixes)
    assert len({m.lam for m in mixes if m is not None}) > 1  # a new weight per batch
    record = json.loads((mc.folder / "config.json").read_text())["training"]
    assert record["mixup"] == 0.4 and "--mixup 0.4" in train_command(record)
