"""--backbone-from: another task's backbone, tensor for tensor; the heads fresh; a wrong start refused."""

from __future__ import annotations

import pytest


def test_backbone_comes_from_the_other_task_and_the_heads_start_fresh(tiny_brain_registry, monkeypatch) -> None:
    import torch
    from safetensors.torch import load_file

    from medimg_demo.learn.start import init_backbone
    from medimg_demo.models.network import TumorNet

    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(tiny_brain_registry))
    brain = load_file(str(tiny_brain_registry / "brain_mri.tiny_v0" / "weights.safetensors"))
    torch.manual_seed(1)  # another random start than the brain model's
    model = TumorNet("test_efficientnet", {"type": ["benign", "malignant", "normal"]}, pretrained="none",
                     lesion_taps=(1, 2, 3, 4))
    head_before = model.heads["head_type"].weight.detach().clone()
    key = next(k for k in brain if k.startswith("backbone.") and brain[k].ndim == 4)
    assert not torch.equal(model.state_dict()[key], brain[key].float())
    init_backbone(model, "brain_mri.tiny_v0", "breast_us", "test_efficientnet")
    own = model.state_dict()
    assert all(torch.equal(own[k], v.to(own[k].dtype)) for k, v in brain.items() if k.startswith("backbone."))
    assert torch.equal(model.heads["head_type"].weight, head_before)  # 3 breast classes, not the brain's 4


def test_a_same_task_or_other_architecture_start_is_refused(tiny_brain_registry, monkeypatch) -> None:
    from medimg_demo.errors import OptionError
    from medimg_demo.learn.config import TrainConfig
    from medimg_demo.learn.start import init_backbone
    from medimg_demo.models.network import TumorNet

    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(tiny_brain_registry))
    model = TumorNet("test_efficientnet", {"type": ["a", "b"]}, pretrained="none")
    with pytest.raises(OptionError, match="--init-from instead"):
        init_backbone(model, "brain_mri.tiny_v0", "brain_mri", "test_efficientnet")
    with pytest.raises(OptionError, match="--arch test_efficientnet"):
        init_backbone(model, "brain_mri.tiny_v0", "breast_us", "tf_efficientnet_lite1")
    with pytest.raises(OptionError, match="give one of them"):
        TrainConfig(task="breast_us", backbone_from="brain_mri.tiny_v0", init_from="breast_us.x_v1").check_options()
