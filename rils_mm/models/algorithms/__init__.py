from .clip import CLIP
from .mae_clip import MAECLIP
from .rils import RILS
from .slip import SLIP
from .zero_shot import CLIP_MEAN, CLIP_STD, ZeroShotClassifierMixin

__all__ = ['CLIP', 'MAECLIP', 'RILS', 'SLIP', 'ZeroShotClassifierMixin', 'CLIP_MEAN', 'CLIP_STD']
