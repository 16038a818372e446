"""Training-free open-vocabulary segmentation (mmseg): not imported by
``import rils_mm`` (mmseg is optional); configs add
``custom_imports=dict(imports=['rils_mm', 'rils_mm.models.segmentors'])``."""
from ...datasets import seg_benchmarks  # noqa: F401  (VOC20, COCO-Object)
from .last_block import LAST_BLOCK_VARIANTS, dense_patch_tokens, last_block_forward
from .zero_shot_segmentor import ZeroShotSegmentor, parse_class_names

__all__ = ['ZeroShotSegmentor', 'parse_class_names', 'LAST_BLOCK_VARIANTS',
           'dense_patch_tokens', 'last_block_forward']
