"""The viewer's pictures: display resolution, a scale bar sized to the picture shown, the colour bar, zoom."""

from __future__ import annotations

import numpy as np
import pytest

from medimg_demo.explain.display import (DISPLAY_SIDE, colour_bar_panel, display_scale, heatmap_peak, pictures,
                                         zoom_box)
from medimg_demo.explain.overlay import _lut


def test_scale_bar_is_sized_to_the_picture_shown_not_to_the_scan() -> None:
    """A 64 px NM-like scan at 4 mm and a 512 px MR-like scan at 0.5 mm cover the same 256 mm: on screen both are
    DISPLAY_SIDE px pictures, so their scale bars (bar, text, margins) are the very same pixels. Drawn at the scans' own
    sizes they were not: the text filled a sixth of the 64 px picture and a fiftieth of the 512 px one."""
    small = pictures(np.zeros((64, 64), np.float32), None, (4.0, 4.0))
    large = pictures(np.zeros((512, 512), np.float32), None, (0.5, 0.5))
    assert small.image.shape == large.image.shape == (DISPLAY_SIDE, DISPLAY_SIDE, 3)
    drawn = small.image.any(axis=2)
    assert 0.001 < drawn.mean() < 0.02  # a bar and its label, bottom right, nothing else
    np.testing.assert_array_equal(small.image, large.image)
    rows, cols = np.nonzero(drawn)
    assert rows.min() > DISPLAY_SIDE * 0.8 and cols.min() > DISPLAY_SIDE * 0.5


def test_colour_bar_runs_from_high_at_the_top_to_low_at_the_bottom() -> None:
    panel = colour_bar_panel(600, 1024)
    column = panel[:, panel.shape[1] // 2].astype(float)
    bar = np.nonzero(np.abs(column - column[0]).sum(axis=1) > 60)[0]  # rows that are not the dark panel or text
    lut = _lut("jet")
    top, bottom = column[bar[len(bar) // 20]], column[bar[-len(bar) // 20]]
    assert np.abs(top - lut[-1]).sum() < np.abs(top - lut[0]).sum()  # red-ish at the top
    assert np.abs(bottom - lut[0]).sum() < np.abs(bottom - lut[-1]).sum()  # blue-ish at the bottom


def test_overlay_carries_the_colour_bar_and_the_image_an_empty_panel_of_the_same_width() -> None:
    gray = np.random.default_rng(0).random((100, 160)).astype(np.float32)
    heat = np.zeros_like(gray)
    heat[30, 120] = 1.0
    p = pictures(gray, heat, None, opacity=0.0)
    assert p.image.shape == p.overlay.shape and p.image.shape[1] > DISPLAY_SIDE  # the panel on the right
    width = round(160 * display_scale(gray.shape))
    np.testing.assert_array_equal(p.image[:, :width], p.overlay[:, :width])  # opacity 0: same picture
    assert len(np.unique(p.image[:, width:].reshape(-1, 3), axis=0)) == 1  # the image's panel is empty
    assert len(np.unique(p.overlay[:, width:].reshape(-1, 3), axis=0)) > 50  # the overlay's holds the scale


def test_zoom_shows_the_region_around_the_heatmap_peak_at_display_resolution() -> None:
    gray = np.zeros((200, 300), np.float32)
    gray[40:60, 240:260] = 1.0  # a bright lesion where the heatmap peaks
    heat = np.zeros_like(gray)
    heat[50, 250] = 1.0
    assert heatmap_peak(heat, gray.shape) == (50.0, 250.0)
    p = pictures(gray, heat, (0.7, 0.7), zoom=4)
    assert p.box.h == 50 and p.box.w == 75 and p.box.y0 <= 50 < p.box.y0 + p.box.h
    assert p.box.x0 + p.box.w <= 300  # kept inside the image
    assert p.zoom_image.shape == p.image.shape  # four times the detail, at the same size on screen
    assert p.zoom_image[..., 0].mean() > 4 * p.image[..., 0].mean()  # the lesion fills much more of the picture
    assert not np.array_equal(p.overview, p.overlay)  # the zoomed region is outlined on the overview


@pytest.mark.parametrize(("zoom", "centre", "expected"), [
    (1, None, (0, 0, 64, 64)), (2, (0.0, 0.0), (0, 0, 32, 32)), (4, (63.0, 63.0), (48, 48, 16, 16)),
    (2, (32.0, 10.0), (16, 0, 32, 32)),
])
def test_zoom_box_stays_inside_the_image(zoom: int, centre: tuple[float, float] | None,
                                         expected: tuple[int, int, int, int]) -> None:
    box = zoom_box((64, 64), zoom, centre)
    assert (box.y0, box.x0, box.h, box.w) == expected


def test_a_large_scan_is_never_shrunk_and_no_heatmap_means_no_colour_bar() -> None:
    assert display_scale((2048, 1500)) == 1.0 and display_scale((64, 32)) == DISPLAY_SIDE / 64
    p = pictures(np.zeros((64, 32), np.float32), None, None)
    assert p.image.shape == (DISPLAY_SIDE, DISPLAY_SIDE // 2, 3) and p.overlay is p.image


def test_a_zoom_inside_a_large_lesion_draws_no_outline_along_its_edges() -> None:
    """At 4x the crop lay inside a large lesion: its mask reached the crop's edges, and the outline ran along them, a
    boundary that is not there (clinician walkthrough, thirty-ninth session). The lesion's own border is still drawn."""
    gray = np.zeros((200, 200), np.float32)
    lesion = np.zeros((200, 200), bool)
    lesion[20:190, 20:190] = True  # larger than a 4x crop (50 x 50) around its centre
    p = pictures(gray, None, None, zoom=4, centre=(100.0, 100.0), lesion=lesion)
    green = (p.zoom_image == np.array([60, 255, 120], np.uint8)).all(axis=2)
    assert not green.any()  # the crop is all lesion: no border of it is in view
    edge = pictures(gray, None, None, zoom=4, centre=(30.0, 100.0), lesion=lesion)
    green = (edge.zoom_image == np.array([60, 255, 120], np.uint8)).all(axis=2)
    rows = np.nonzero(green.any(axis=1))[0]
    assert green.any() and rows.max() < green.shape[0] // 2  # only the lesion's top border, in the crop's top half
    whole = (p.image == np.array([60, 255, 120], np.uint8)).all(axis=2)
    assert whole.any()  # the whole scan shows the lesion's border
    everywhere = np.ones((200, 200), bool)  # a lesion to the image's edges: those edges end it, the crop's do not
    full = pictures(gray, None, None, zoom=4, centre=(100.0, 100.0), lesion=everywhere)
    assert (full.image == np.array([60, 255, 120], np.uint8)).all(axis=2).any()
    assert not (full.zoom_image == np.array([60, 255, 120], np.uint8)).all(axis=2).any()
