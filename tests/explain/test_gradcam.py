"""Grad-CAM: shape, range, and that it follows the explained class."""

from __future__ import annotations

import numpy as np
import torch

from conftest import gradient
from medimg_demo.explain.gradcam import gradcam
from medimg_demo.models.network import TumorNet
from medimg_demo.explain.overlay import overlay
from medimg_demo.models.preprocess import to_tensor
from medimg_demo.models.config import InputConfig

CFG = InputConfig(size=(96, 96), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _model() -> TumorNet:
    torch.manual_seed(0)
    return TumorNet("tf_efficientnet_lite0", {"type": ["a", "b", "c"]}, pretrained="none").eval()


def test_cam_shape_and_range_at_image_size() -> None:
    img = gradient(70, 110)
    ex = gradcam(_model(), to_tensor(img, CFG), "type", "backbone.bn2", img.shape)
    assert ex.cam.shape == (70, 110) and ex.cam.dtype == np.float32
    assert ex.cam.min() >= 0.0 and ex.cam.max() <= 1.0
    assert ex.cam.max() == 1.0  # normalised to its maximum
    assert set(ex.logits) == {"type"} and ex.logits["type"].shape == (1, 3)
    assert ex.target == int(ex.logits["type"].argmax())  # default: the predicted class


def test_cam_moves_with_the_class() -> None:
    """Class b's head weights are the negative of class a's: their maps must be (near) complementary."""
    m = _model()
    with torch.no_grad():
        w = m.heads["head_type"].weight
        w[1] = -w[0]
    img = gradient(96, 96)
    x = to_tensor(img, CFG)
    cam_a = gradcam(m, x, "type", "backbone.bn2", img.shape, target=0).cam
    cam_b = gradcam(m, x, "type", "backbone.bn2", img.shape, target=1).cam
    assert cam_a.max() > 0 and cam_b.max() > 0
    r = np.corrcoef(cam_a.ravel(), cam_b.ravel())[0, 1]
    assert r < -0.3, r
    cam_c = gradcam(m, x, "type", "backbone.bn2", img.shape, target=2).cam
    assert not np.allclose(cam_a, cam_c)


def test_no_hooks_left_behind() -> None:
    m = _model()
    img = gradient(64, 64)
    for _ in range(3):
        gradcam(m, to_tensor(img, CFG), "type", "backbone.bn2", img.shape)
    layer = m.layer("backbone.bn2")
    assert not layer._forward_hooks and not layer._backward_hooks


def test_overlay_blends_with_opacity() -> None:
    img = gradient(32, 48).astype(np.float32)
    heat = np.linspace(0, 1, 32 * 48, dtype=np.float32).reshape(32, 48)
    zero = overlay(img, heat, 0.0)
    full = overlay(img, heat, 1.0)
    assert zero.shape == (32, 48, 3) and zero.dtype == np.uint8
    np.testing.assert_array_equal(zero[..., 0], zero[..., 1])  # opacity 0: the grey image
    assert np.abs(full.astype(int) - zero.astype(int)).mean() > 20


def test_stages_combined_in_one_pass_equal_the_product_of_captum_maps() -> None:
    """"a*b" runs one forward and one backward for both layers (Captum's layer-gradient routine): the map must equal
    the normalised product of Captum's LayerGradCam map of each layer, explaining the same class; no hook is left."""
    m = _model()
    img = gradient(80, 96)
    x = to_tensor(img, CFG)
    both = gradcam(m, x, "type", "backbone.bn2*backbone.blocks.4", img.shape)
    one = gradcam(m, x, "type", "backbone.bn2", img.shape, target=both.target).cam
    four = gradcam(m, x, "type", "backbone.blocks.4", img.shape, target=both.target).cam
    expected = one * four
    expected = expected / expected.max()
    assert both.cam.max() == 1.0 and np.allclose(both.cam, expected, atol=1e-5)
    assert not np.allclose(both.cam, one, atol=1e-2)  # the finer stage changes the map
    for name in ("backbone.bn2", "backbone.blocks.4"):
        assert not m.layer(name)._forward_hooks and not m.layer(name)._backward_hooks
