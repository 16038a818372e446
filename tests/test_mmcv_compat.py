"""mmcv 2.1's adjust_hue under numpy 2: negative hue shifts wrap as under numpy 1."""
import cv2
import numpy as np
import pytest
from mmpretrain.registry import TRANSFORMS

import rils_mm  # noqa: F401  (installs the replacement where mmcv's fails)


def numpy1_adjust_hue(img, hue_factor):
    """mmcv's cv2 path with numpy 1's cast: shift = trunc(255 f) mod 256."""
    h, s, v = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV_FULL))
    h = ((h.astype(np.int64) + int(hue_factor * 255)) % 256).astype(np.uint8)
    return cv2.cvtColor(cv2.merge([h, s, v]), cv2.COLOR_HSV2BGR_FULL)


@pytest.mark.parametrize('hue_factor', [-0.5, -0.3, -0.1, -0.001, 0.0, 0.2, 0.5])
def test_adjust_hue_wraps_like_numpy1(hue_factor):
    import mmcv
    img = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(mmcv.adjust_hue(img, hue_factor, backend='cv2'),
                                  numpy1_adjust_hue(img, hue_factor))
    with pytest.raises(ValueError, match='not in'):
        mmcv.adjust_hue(img, -0.6)


def test_slip_color_jitter_never_fails():
    jitter = TRANSFORMS.build(dict(type='ColorJitter', brightness=0.4, contrast=0.4,
                                   saturation=0.4, hue=0.1))
    rng = np.random.default_rng(1)
    for _ in range(40):
        img = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
        out = jitter(dict(img=img))['img']
        assert out.shape == img.shape and out.dtype == np.uint8
