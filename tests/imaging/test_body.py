"""The body mask: the flat background connected to the border is not body; what cannot be told is None."""

from __future__ import annotations

import numpy as np
import pytest

from medimg_demo.imaging.body import body_mask


def _slice(background: float, h: int = 120, w: int = 160, rx: float = 55, ry: float = 40) -> tuple[np.ndarray, np.ndarray]:
    """An elliptic 'body' (grey 0.6, two dark 'lungs' inside it) on a flat background, and the ellipse itself."""
    yy, xx = np.mgrid[:h, :w]
    ellipse = ((xx - w / 2) / rx) ** 2 + ((yy - h / 2) / ry) ** 2 <= 1
    img = np.full((h, w), background, dtype=np.float32)
    img[ellipse] = 0.6
    for cx in (w / 2 - 22, w / 2 + 22):
        img[((xx - cx) / 15) ** 2 + ((yy - h / 2) / 22) ** 2 <= 1] = background  # as dark as the air outside
    return img, ellipse


@pytest.mark.parametrize("background", [0.0, 0.2])
def test_body_on_black_or_grey_background_is_the_ellipse_with_its_lungs(background: float) -> None:
    img, ellipse = _slice(background)
    mask = body_mask(img)
    assert mask is not None and mask.dtype == bool and mask.shape == img.shape
    assert mask[ellipse].all()  # the lungs, as dark as the background, are inside: holes filled
    outside = ~mask[~ellipse]
    assert outside.mean() > 0.95  # only the 2 px the mask is grown by spill over


def test_a_table_beneath_the_body_is_left_out() -> None:
    img, ellipse = _slice(0.0)
    img[112:115, 20:140] = 0.7  # a couch line, not touching the body
    mask = body_mask(img)
    assert mask is not None and not mask[113, 20:140].any()


def test_white_background_tiny_body_and_bad_shape_are_refused_or_none() -> None:
    assert body_mask(_slice(0.9)[0]) is None  # white background: soft tissue cannot be told from it
    assert body_mask(_slice(0.0, rx=8, ry=6)[0]) is None  # under 15% of the image
    with pytest.raises(ValueError, match="2-D"):
        body_mask(np.zeros((2, 8, 8), dtype=np.float32))
