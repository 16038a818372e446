"""Decode only the pixels a random resized crop needs (JPEG draft mode).

A LAION image is 256-1024 px on its shorter side and the training crop is
224 px, so most decoded pixels are thrown away by ``RandomResizedCrop``. The
crop box depends only on the image size, which PIL reads from the header
without decoding. :class:`DecodeRandomResizedCrop` therefore draws the box
first (with mmpretrain's own ``RandomResizedCrop`` sampler, so the boxes
follow exactly the same distribution and use the same random numbers), then
has libjpeg decode at the smallest DCT scale (1, 1/2, 1/4 or 1/8) at which the
box is still at least ``scale`` pixels on both sides (JPEG draft mode, here
through ``cv2.imdecode(IMREAD_REDUCED_COLOR_*)``, which also decodes straight
into BGR without PIL's extra full-size copies), and finally crops and resizes
that much smaller image. Non-JPEG images, JPEGs in other colour modes than
RGB/L and JPEGs whose EXIF orientation rotates them take the plain path:
full decode with :func:`~rils_mm.datasets.transforms.decode_image_bgr`, then
the crop.

At full scale the output is identical to "decode with PIL, then mmpretrain's
``RandomResizedCrop``" (same libjpeg, same box; tested). At a reduced scale it
differs only in how pixels are averaged when shrinking (libjpeg's DCT scaling
instead of a bilinear resize that skips pixels); ``tools/benchmark_decode.py``
measures the speed and that difference (PSNR) on LAION-like JPEGs.
"""
import io
from typing import Sequence, Tuple, Union

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.datasets.transforms import RandomResizedCrop
from mmpretrain.registry import TRANSFORMS
from PIL import Image

from .transforms import decode_image_bgr

__all__ = ['DecodeRandomResizedCrop', 'draft_scale', 'psnr']

_EXIF_ORIENTATION = 0x0112
# JPEG colour modes whose libjpeg decode cv2 returns exactly like PIL's
# ``convert('RGB')`` (CMYK and the like take the plain path).
_FAST_MODES = ('RGB', 'L')
# cv2 decodes straight to BGR, at 1/1, 1/2, 1/4 or 1/8 of the size (libjpeg
# DCT scaling).
_CV2_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
              4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def draft_scale(box_w: float, box_h: float, size: Tuple[int, int]) -> int:
    """Largest JPEG DCT reduction in (1, 2, 4, 8) that keeps a ``box_w x
    box_h`` crop at least ``size`` = (w, h) pixels."""
    reduction = 1
    while (reduction < 8 and box_w / (2 * reduction) >= size[0]
           and box_h / (2 * reduction) >= size[1]):
        reduction *= 2
    return reduction


@TRANSFORMS.register_module()
class DecodeRandomResizedCrop(BaseTransform):
    """Decode encoded image bytes and take a random resized crop, decoding
    JPEGs only at the resolution the crop needs.

    Replaces ``LoadImageFromFile`` (or a reader's own decoding) followed by
    ``RandomResizedCrop``. Box sampling and arguments are those of
    mmpretrain's :class:`RandomResizedCrop` (``scale``, ``crop_ratio_range``,
    ``aspect_ratio_range``, ``max_attempts``, ``interpolation``); the output
    is a BGR ``uint8`` array of ``scale`` like that transform's.

    **Required Keys:** ``bytes_key`` (encoded image) or ``img_path``

    **Added Keys:** ``img``, ``img_shape``, ``ori_shape``,
    ``decode_reduction`` (the DCT reduction used, 1 = full resolution)

    Args:
        scale (int | Sequence[int]): output (h, w) or side. Defaults to 224.
        bytes_key (str): where the encoded image is. Defaults to 'img_bytes'.
        draft (bool): use JPEG draft mode. ``False`` gives the plain path
            (the reference the fast path is measured against).
        **kwargs: other arguments of mmpretrain's ``RandomResizedCrop``.
    """

    def __init__(self,
                 scale: Union[Sequence[int], int] = 224,
                 bytes_key: str = 'img_bytes',
                 draft: bool = True,
                 **kwargs) -> None:
        self.rrc = RandomResizedCrop(scale=scale, **kwargs)
        self.bytes_key = bytes_key
        self.draft = draft

    def _read(self, results: dict) -> bytes:
        data = results.get(self.bytes_key)
        if data is None:
            path = results.get('img_path')
            if path is None:
                raise KeyError(
                    f'DecodeRandomResizedCrop needs results[{self.bytes_key!r}]'
                    " (encoded image bytes) or results['img_path']")
            with open(path, 'rb') as f:
                data = f.read()
        return data

    def transform(self, results: dict) -> dict:
        data = self._read(results)
        out_h, out_w = self.rrc.scale  # mmpretrain's scale is (h, w)
        with io.BytesIO(data) as buff:
            img = Image.open(buff)  # reads the header only
            fast = (self.draft and img.format == 'JPEG'
                    and img.mode in _FAST_MODES
                    and img.getexif().get(_EXIF_ORIENTATION, 1) == 1)
            W, H = img.size
        if fast:
            # The sampler only reads the shape: hand it a zero-size stand-in.
            top, left, h, w = self.rrc.rand_crop_params(
                np.broadcast_to(np.zeros((), np.uint8), (H, W, 3)))
            reduction = draft_scale(w, h, (out_w, out_h))
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), _CV2_FLAGS[reduction])
            if bgr is None or bgr.ndim != 3:
                fast = False
        if fast:
            sy, sx = bgr.shape[0] / H, bgr.shape[1] / W
            y0, x0 = int(top * sy), int(left * sx)
            y1 = max(y0 + 1, int(round((top + h) * sy)))
            x1 = max(x0 + 1, int(round((left + w) * sx)))
            crop = self._resize(bgr[y0:y1, x0:x1], out_w, out_h)
            shape = (H, W)
        else:
            full = decode_image_bgr(data)
            shape = full.shape[:2]
            top, left, h, w = self.rrc.rand_crop_params(full)
            crop = self._resize(full[top:top + h, left:left + w], out_w, out_h)
            reduction = 1
        results['img'] = crop
        results['img_shape'] = crop.shape[:2]
        results['ori_shape'] = shape
        results['decode_reduction'] = reduction
        return results

    def _resize(self, crop: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
        import mmcv
        return mmcv.imresize(crop, (out_w, out_h),
                             interpolation=self.rrc.interpolation,
                             backend=self.rrc.backend)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(rrc={self.rrc!r}, '
                f'bytes_key={self.bytes_key!r}, draft={self.draft})')


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) of two uint8 images."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64))**2)
    return float('inf') if mse == 0 else 10 * np.log10(255.**2 / mse)

