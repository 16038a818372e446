from .clip import CLIP
from .mae_clip import MAECLIP
from .rils import RILS
from .zero_shot import CLIP_MEAN, CLIP_STD, ZeroShotClassifierMixin

__all__ = ['CLIP', 'MAECLIP', 'RILS', 'ZeroShotClassifierMixin', 'CLIP_MEAN', 'CLIP_STD']
