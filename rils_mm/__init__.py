"""rils-mm: RILS (Masked Visual Reconstruction in Language Semantic Space, CVPR 2023)
as an OpenMMLab plugin.

Importing the package registers every component into mmpretrain's registries (and the
vision backbone into mmdet's and mmseg's), and allow-lists the types our checkpoints hold
for ``torch.load(weights_only=True)``.
"""
from .utils.checkpoint import register_checkpoint_safety
from .version import __version__

register_checkpoint_safety()

from . import datasets, engine, evaluation, models, visualization  # noqa: E402,F401

__all__ = ['__version__']
