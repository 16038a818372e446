"""Keep mmcv 2.1's ``adjust_hue`` working under numpy 2.

``mmcv.adjust_hue`` shifts the hue channel with ``h += np.uint8(hue_factor * 255)``.
numpy 1 wrapped a negative shift around (``np.uint8(-25) == 231``); numpy 2 raises
``OverflowError`` instead, so mmpretrain's ``ColorJitter`` with ``hue > 0`` (SLIP's
SimCLR views) failed on about half of its samples, which the readers then skipped. The
replacement computes the same wrapped shift (truncated toward zero, modulo 256, as numpy
1 did) and is otherwise mmcv's function; it is installed only where the original fails.
"""
import functools

import numpy as np


def _uint8_shift(hue_factor: float) -> np.uint8:
    """``np.uint8(hue_factor * 255)`` as numpy 1 computed it."""
    return np.uint8(int(hue_factor * 255) % 256)


def patch_adjust_hue() -> bool:
    """Install the numpy-2-safe ``adjust_hue`` into mmcv if its own one fails on a
    negative ``hue_factor``; returns whether it did."""
    import mmcv
    import mmcv.image
    import mmcv.image.photometric as photometric
    original = photometric.adjust_hue
    if getattr(original, '_rils_mm_numpy2', False):
        return False
    try:
        original(np.zeros((1, 1, 3), np.uint8), -0.1, backend='cv2')
        return False
    except OverflowError:
        pass

    @functools.wraps(original)
    def adjust_hue(img, hue_factor, backend=None):
        if hue_factor >= 0:
            return original(img, hue_factor, backend=backend)
        if not -0.5 <= hue_factor <= 0.5:
            raise ValueError(f'hue_factor:{hue_factor} is not in [-0.5, 0.5].')
        # a negative shift d is the uint8 shift 256 + d, as numpy 1 cast it
        return _shifted(img, int(_uint8_shift(hue_factor)), backend)

    adjust_hue._rils_mm_numpy2 = True
    for module in (mmcv, mmcv.image, photometric):
        module.adjust_hue = adjust_hue
    return True


def _shifted(img, shift: int, backend):
    """mmcv's ``adjust_hue`` for an already wrapped uint8 ``shift``."""
    import cv2
    from PIL import Image
    if (backend or 'cv2') == 'pillow':
        pil_image = Image.fromarray(img[..., ::-1], mode='RGB')
        h, s, v = pil_image.convert('HSV').split()
        np_h = np.array(h, dtype=np.uint8)
        np_h += np.uint8(shift)
        h = Image.fromarray(np_h, 'L')
        return np.array(Image.merge('HSV', (h, s, v)).convert('RGB'), dtype=img.dtype)[..., ::-1]
    dtype = img.dtype
    hsv_img = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_BGR2HSV_FULL)
    h, s, v = cv2.split(hsv_img)
    h = h.astype(np.uint8)
    h += np.uint8(shift)
    return cv2.cvtColor(cv2.merge([h, s, v]), cv2.COLOR_HSV2BGR_FULL).astype(dtype)
