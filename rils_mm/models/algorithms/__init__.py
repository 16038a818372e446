from .rils import CLIP_MEAN, CLIP_STD, RILS

__all__ = ['RILS', 'CLIP_MEAN', 'CLIP_STD']
