"""rils-mm: RILS (Masked Visual Reconstruction in Language Semantic Space, CVPR 2023)
as an OpenMMLab plugin.

Importing the package registers every component into mmpretrain's registries (and the
vision backbone into mmdet's and mmseg's), and allow-lists the types our checkpoints hold
for ``torch.load(weights_only=True)``.

With transformers 5.x installed, mmpretrain's multimodal models (which need 4.x) are left
out first (:mod:`rils_mm.utils.mmpretrain_compat`), so that the rest imports.
"""
from .utils.mmpretrain_compat import skip_multimodal_with_transformers5

skip_multimodal_with_transformers5()

from .utils.checkpoint import register_checkpoint_safety  # noqa: E402
from .version import __version__  # noqa: E402

register_checkpoint_safety()

from .utils.mmcv_compat import patch_adjust_hue  # noqa: E402

patch_adjust_hue()  # mmcv 2.1's adjust_hue under numpy 2

from . import datasets, engine, evaluation, models, visualization  # noqa: E402,F401

__all__ = ['__version__']
