from .contrastive_head import ImageTextContrastiveHead
from .rils_head import RILSHead
from .vision_space_head import VisionSpaceReconHead

__all__ = ['ImageTextContrastiveHead', 'RILSHead', 'VisionSpaceReconHead']
