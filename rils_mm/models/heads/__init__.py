from .contrastive_head import ImageTextContrastiveHead
from .rils_head import RILSHead

__all__ = ['ImageTextContrastiveHead', 'RILSHead']
