"""The lesion as pixels: measurements in px and mm, the outline, the border in-fill, the size category rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medimg_demo.explain.lesion import (erase, erase_smooth, largest_component, longest_diameter, mask_from_probs, measure, outline,
                                        peak_xy, region_elsewhere)
from medimg_demo.learn.counterfactual import counterfactual, cover
from medimg_demo.tasks import BREAST_T_BY_SIZE, get_task


def _rect(h: int = 60, w: int = 80, y0: int = 10, x0: int = 20, bh: int = 10, bw: int = 20) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y0 + bh, x0:x0 + bw] = True
    return m


def test_measure_gives_box_area_and_longest_diameter_in_px_and_mm() -> None:
    m = measure(_rect(), (0.5, 0.5))
    assert m is not None
    assert m.bbox_xywh == (20, 10, 20, 10) and m.area_px == 200
    assert m.longest_diameter_px == pytest.approx(math.hypot(10, 20))  # corner to corner
    assert m.longest_diameter_mm == pytest.approx(math.hypot(10, 20) * 0.5)
    assert m.area_mm2 == pytest.approx(50.0)
    assert "mm" in m.describe()


def test_anisotropic_spacing_scales_rows_and_columns_apart() -> None:
    line = np.zeros((50, 50), bool)
    line[10:40, 5] = True  # 30 px tall, 1 px wide
    assert longest_diameter(line, (2.0, 1.0)) == pytest.approx(math.hypot(60, 1))
    assert longest_diameter(line, (1.0, 2.0)) == pytest.approx(math.hypot(30, 2))


def test_longest_diameter_matches_all_pairs_of_pixel_corners_on_random_masks() -> None:
    rng = np.random.default_rng(3)
    for _ in range(40):
        mask = rng.random((25, 30)) < rng.uniform(0.02, 0.4)
        if not mask.any():
            continue
        spacing = (float(rng.uniform(0.2, 2.0)), float(rng.uniform(0.2, 2.0)))
        ys, xs = np.nonzero(mask)
        corners = np.concatenate([np.stack([ys + dy, xs + dx], 1) for dy in (0, 1) for dx in (0, 1)]) * spacing
        brute = np.sqrt(((corners[:, None] - corners[None]) ** 2).sum(-1)).max()
        assert longest_diameter(mask, spacing) == pytest.approx(brute)
        m = measure(mask, spacing)
        assert m is not None and m.longest_diameter_mm == pytest.approx(brute)


def test_without_spacing_the_lesion_is_not_measurable_in_mm() -> None:
    m = measure(_rect(), None)
    assert m is not None and m.longest_diameter_mm is None and m.area_mm2 is None
    assert "not measurable" in m.describe()
    assert m.to_json()["longest_diameter_mm"] is None
    assert measure(np.zeros((5, 5), bool), (1.0, 1.0)) is None


def test_largest_component_and_outline() -> None:
    m = _rect() | _rect(y0=40, x0=60, bh=3, bw=3)
    big = largest_component(m)
    assert big.sum() == 200 and not big[41, 61]
    edge = outline(big)
    assert edge[10, 25] and not edge[15, 30] and edge.sum() == 2 * (20 + 10) - 4


def test_largest_component_and_measure_agree_with_labelling_the_whole_image() -> None:
    """Both work within the mask's box: the same component (the first in raster order between equal sizes), box,
    area and diameters as labelling and measuring every pixel of the image."""
    from scipy import ndimage

    rng = np.random.default_rng(7)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        field = ndimage.gaussian_filter(rng.random((h, w)), float(rng.uniform(0, 2)))
        mask = field > np.quantile(field, rng.uniform(0.4, 1.0))
        labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
        sizes = [int((labels == i).sum()) for i in range(1, n + 1)]
        expected = mask if n <= 1 else labels == (sizes.index(max(sizes)) + 1)
        got = largest_component(mask)
        assert got.shape == mask.shape and np.array_equal(got, expected)
        m = measure(got, (0.7, 1.3))
        if not got.any():
            assert m is None
            continue
        ys, xs = np.nonzero(got)
        assert m is not None and m.area_px == len(ys)
        assert m.bbox_xywh == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert m.longest_diameter_px == pytest.approx(longest_diameter(got))
        assert m.longest_diameter_mm == pytest.approx(longest_diameter(got, (0.7, 1.3)))


def test_mask_from_probs_upsamples_and_cuts() -> None:
    probs = np.zeros((8, 8), np.float32)
    probs[2:4, 2:4] = 0.9
    mask = mask_from_probs(probs, (64, 64), 0.5)
    assert mask.shape == (64, 64) and mask[24, 24] and not mask[50, 50]


def test_erase_infills_from_the_border_and_leaves_the_rest() -> None:
    img = np.full((60, 80), 0.3, np.float32)
    region = _rect()
    img[region] = 1.0
    out = erase(img, region)
    assert np.allclose(out[region], 0.3, atol=1e-3)
    assert np.array_equal(out[~region], img[~region])


def test_smooth_erase_fills_from_the_surroundings_with_their_texture_and_leaves_the_rest() -> None:
    img = (0.3 + 0.05 * np.random.default_rng(2).standard_normal((60, 80))).astype(np.float32)
    region = _rect()
    img[region] = 1.0
    out = erase_smooth(img, region)
    assert abs(float(out[region].mean()) - 0.3) < 0.03  # the bright lesion is gone
    assert 0.005 < float(out[region].std()) < 0.05  # with some texture, not a flat patch
    assert np.array_equal(out[~region], img[~region])
    assert not np.array_equal(out[region], erase(img, region)[region])  # a different in-fill from the border one


def test_region_elsewhere_has_the_same_shape_and_keeps_away() -> None:
    region = _rect(h=100, w=100)
    moved = region_elsewhere(region, np.random.default_rng(0))
    assert moved is not None and moved.sum() == region.sum()
    from scipy import ndimage

    assert not (moved & ndimage.binary_dilation(region, iterations=4)).any()


def test_counterfactual_cover_changes_the_lesion_box_only() -> None:
    rng = np.random.default_rng(0)
    img = np.random.default_rng(1).random((64, 64)).astype(np.float32) * 0.2
    lesion = _rect(64, 64, 20, 20, 10, 10)
    img[lesion] = 1.0
    out = cover(img, lesion, rng)
    assert out[lesion].mean() < 0.5  # the bright lesion is gone
    assert np.array_equal(out[:10], img[:10]) and np.array_equal(out[:, 40:], img[:, 40:])
    _, covered, changed = counterfactual(img, lesion, rng, 1.0, 0.0)
    assert covered and changed
    same, covered, changed = counterfactual(img, np.zeros_like(lesion), rng, 1.0, 0.0)
    assert not covered and not changed and same is img
    fills = [counterfactual(img, lesion, np.random.default_rng(s), 1.0, 0.0, infill="mixed")[0] for s in range(12)]
    assert all(f[lesion].mean() < 0.5 for f in fills)
    border = [f for f in fills if np.array_equal(f[:10], img[:10]) and f[lesion].std() < 0.05]  # smooth in-fill
    assert 0 < len(border) < len(fills)  # both methods drawn
    with pytest.raises(ValueError, match="in-fill"):
        counterfactual(img, lesion, rng, 1.0, 0.0, infill="paint")


def test_heatmap_peak_is_x_then_y() -> None:
    h = np.zeros((30, 40))
    h[7, 31] = 1
    assert peak_xy(h) == (31, 7)


@pytest.mark.parametrize(("mm", "cat"), [(5.0, "T1"), (20.0, "T1"), (20.1, "T2"), (50.0, "T2"), (50.1, "T3")])
def test_breast_size_category_follows_ajcc_cut_points(mm: float, cat: str) -> None:
    assert BREAST_T_BY_SIZE.category(mm) == cat
    j = BREAST_T_BY_SIZE.to_json(mm)
    assert j["label"] == cat and "imaging size estimate" in str(j["note"]).lower()


def test_staging_rules_live_in_tasks() -> None:
    assert get_task("breast_us").size_rule is BREAST_T_BY_SIZE and get_task("breast_us").stage_rule == "size"
    assert "not staged by imaging" in (get_task("brain_mri").staging_note or "").lower()
    assert get_task("lung_ct").stage_rule == "learned" and get_task("lung_ct").size_rule is None
