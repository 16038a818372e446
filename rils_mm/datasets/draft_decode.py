"""Decode only the pixels a random resized crop needs (JPEG draft mode).

A LAION image is 256-1024 px on its shorter side and the training crop is
224 px, so most decoded pixels are thrown away by ``RandomResizedCrop``. The
crop box depends only on the image size, which PIL reads from the header
without decoding. :class:`DecodeRandomResizedCrop` therefore draws the box
first (with mmpretrain's own ``RandomResizedCrop`` sampler, so the boxes
follow exactly the same distribution and use the same random numbers), then
asks libjpeg for the smallest DCT scale (1, 1/2, 1/4 or 1/8) at which the box
is still at least ``scale`` pixels on both sides (``Image.draft``), and
finally crops and resizes that much smaller image. Non-JPEG images (and
JPEGs whose EXIF orientation rotates them) take the plain path: full decode
like :func:`~rils_mm.datasets.transforms.decode_image_bgr`, then the crop.

The output differs from "decode everything, then crop and resize" only in
how pixels are averaged when shrinking (libjpeg's DCT scaling instead of
skipping pixels in a bilinear resize); ``tools/benchmark_decode.py``
measures the speed and the difference (PSNR) on LAION-like JPEGs.
"""
import io
from typing import Sequence, Tuple, Union

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.datasets.transforms import RandomResizedCrop
from mmpretrain.registry import TRANSFORMS
from PIL import Image

from .transforms import decode_image_bgr

__all__ = ['DecodeRandomResizedCrop', 'draft_scale', 'psnr']

_EXIF_ORIENTATION = 0x0112


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
            img = Image.open(buff)
            fast = (self.draft and img.format == 'JPEG'
                    and img.getexif().get(_EXIF_ORIENTATION, 1) == 1)
            if fast:
                crop, reduction, shape = self._draft_crop(img, out_w, out_h)
        if not fast:
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

    def _draft_crop(self, img: Image.Image, out_w: int, out_h: int):
        W, H = img.size
        # The sampler only reads the shape: hand it a zero-size stand-in.
        top, left, h, w = self.rrc.rand_crop_params(
            np.broadcast_to(np.zeros((), np.uint8), (H, W, 3)))
        reduction = draft_scale(w, h, (out_w, out_h))
        if reduction > 1:
            img.draft('RGB', (-(-W // reduction), -(-H // reduction)))
        img = img.convert('RGB')
        sx, sy = img.size[0] / W, img.size[1] / H
        x0, y0 = int(left * sx), int(top * sy)
        x1 = max(x0 + 1, int(round((left + w) * sx)))
        y1 = max(y0 + 1, int(round((top + h) * sy)))
        rgb = np.asarray(img.crop((x0, y0, x1, y1)))
        crop = self._resize(np.ascontiguousarray(rgb[:, :, ::-1]), out_w, out_h)
        return crop, W // img.size[0] if img.size[0] else 1, (H, W)

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

