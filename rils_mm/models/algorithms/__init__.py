from .clip import CLIP
from .rils import RILS
from .zero_shot import CLIP_MEAN, CLIP_STD, ZeroShotClassifierMixin

__all__ = ['CLIP', 'RILS', 'ZeroShotClassifierMixin', 'CLIP_MEAN', 'CLIP_STD']
