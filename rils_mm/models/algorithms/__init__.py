from .clip import CLIP
from .image_text import ImageTextPretrainer
from .mae_clip import MAECLIP
from .rils import RILS
from .slip import SLIP
from .zero_shot import CLIP_MEAN, CLIP_STD, ZeroShotClassifierMixin

__all__ = ['CLIP', 'MAECLIP', 'RILS', 'SLIP', 'ImageTextPretrainer', 'ZeroShotClassifierMixin',
           'CLIP_MEAN', 'CLIP_STD']
