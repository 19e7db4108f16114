"""--sam: sharpness-aware minimisation (Foret et al., 2021). Each step's gradient is taken at the weights moved rho
along the normalised gradient and applied at the weights the step started from; off by default, and then a step is
the plain one."""

from __future__ import annotations

import pytest
import torch

from medimg_demo.errors import OptionError
from medimg_demo.learn.config import TrainConfig, train_command
from medimg_demo.learn.sam import SharpnessAware


def _quadratic() -> tuple[torch.nn.Module, torch.Tensor, torch.optim.Optimizer]:
    model = torch.nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0, 0.5]]))
    a = torch.tensor([[1.0, 3.0, 2.0]])
    return model, a, torch.optim.SGD(model.parameters(), lr=0.1)


def test_off_is_one_plain_backward() -> None:
    model, a, opt = _quadratic()
    calls = []

    def loss_fn() -> torch.Tensor:
        calls.append(1)
        return (a * model.weight ** 2).sum()

    loss = SharpnessAware(0.0, model).backward(loss_fn, opt)
    assert len(calls) == 1
    assert float(loss.detach()) == pytest.approx(1 + 12 + 0.5)
    assert torch.allclose(model.weight.grad, 2 * a * model.weight.detach())
    with pytest.raises(ValueError, match="radius"):
        SharpnessAware(-0.1, model)


def test_the_gradient_is_taken_at_the_perturbed_weights_and_the_weights_come_back() -> None:
    model, a, opt = _quadratic()
    w0 = model.weight.detach().clone()
    rho = 0.05
    g0 = 2 * a * w0
    expected = 2 * a * (w0 + rho * g0 / g0.norm())  # the gradient of sum(a w^2) at the ascended weights
    loss = SharpnessAware(rho, model).backward(lambda: (a * model.weight ** 2).sum(), opt)
    assert torch.equal(model.weight.detach(), w0)  # restored exactly: the step starts where it was
    assert float(loss.detach()) == pytest.approx(float((a * w0 ** 2).sum()))  # the loss reported is the unperturbed one
    assert torch.allclose(model.weight.grad, expected, atol=1e-6)
    assert not torch.allclose(model.weight.grad, g0)


def test_frozen_parameters_stay_and_batchnorm_counts_the_batch_once() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))
    model[2].requires_grad_(False)  # like the backbone during the warm-up
    frozen = model[2].weight.detach().clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x = torch.randn(16, 4)
    plain = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))
    plain.load_state_dict(model.state_dict())
    plain(x).pow(2).mean().backward()  # one plain step's statistics update
    SharpnessAware(0.5, model).backward(lambda: model(x).pow(2).mean(), opt)
    assert torch.equal(model[2].weight.detach(), frozen) and model[2].weight.grad is None
    assert torch.allclose(model[1].running_mean, plain[1].running_mean)
    assert torch.allclose(model[1].running_var, plain[1].running_var)
    assert model[1].momentum == plain[1].momentum  # restored after the second pass


def test_the_option_is_checked_and_printed_by_the_card_command_only_when_on() -> None:
    for bad in (-0.01, 1.5):
        with pytest.raises(OptionError, match="radius"):
            TrainConfig(task="lung_ct", sam=bad).check_options()
    assert "--sam 0.05" in train_command({**TrainConfig(task="lung_ct", sam=0.05).__dict__})
    assert "--sam" not in train_command({**TrainConfig(task="lung_ct").__dict__})  # parsed back: test_train_options


@pytest.mark.slow
def test_training_takes_two_passes_per_step_and_records_the_option(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import json

    from conftest import two_class_set

    from medimg_demo.learn import train as train_module
    from medimg_demo.learn.batch_loss import BatchLoss

    passes: list[int] = []

    class Counting(BatchLoss):
        def __call__(self, x, ys, mix):  # noqa: ANN001, ANN204
            passes.append(len(x))
            return super().__call__(x, ys, mix)

    monkeypatch.setattr(train_module, "BatchLoss", Counting)
    two_class_set(tmp_path / "toy", 12)
    common = {"data": str(tmp_path / "toy"), "task": "toy", "out_dir": str(tmp_path / "models"), "pretrained": "offline",
              "size": 48, "epochs": 1, "warmup_epochs": 1, "batch_size": 8, "seed": 0}
    train_module.train(TrainConfig(model_id="toy.plain_v0", **common))
    plain = len(passes)
    passes.clear()
    mc = train_module.train(TrainConfig(model_id="toy.sam_v0", sam=0.05, **common))
    assert plain > 0 and len(passes) == 2 * plain  # every step, warm-up included, evaluates the loss twice
    record = json.loads((mc.folder / "config.json").read_text())["training"]
    assert record["sam"] == 0.05 and "--sam 0.05" in train_command(record)


def test_the_second_pass_reuses_the_teachers_call_for_the_same_batch() -> None:
    from medimg_demo.learn.batch_loss import BatchLoss

    class Student(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def features_and_lesion(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
            return x.mean(dim=(2, 3)), None

        def forward_head(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"type": self.lin(feats)}

    calls: list[int] = []

    def teacher(x: torch.Tensor) -> dict[str, torch.Tensor]:
        calls.append(len(x))
        return {"type": torch.zeros(len(x), 2)}

    cfg = TrainConfig(task="toy", distill_from="toy.t_v0", distill_weight=1.0, guidance_weight=0.0)
    loss = BatchLoss(Student(), cfg, {"type": ["a", "b"]}, {"type": torch.ones(2)}, teacher, None)  # type: ignore[arg-type]
    x, ys = torch.randn(4, 3, 8, 8), {"type": torch.tensor([0, 1, 0, 1])}
    first, second = loss(x, ys, None), loss(x, ys, None)
    assert calls == [4] and torch.allclose(first, second)
    loss(torch.randn(4, 3, 8, 8), ys, None)  # the next batch asks the teacher again
    assert calls == [4, 4]
