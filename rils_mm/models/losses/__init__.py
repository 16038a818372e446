from .contrastive import ImageTextContrastiveLoss
from .recon import LanguageSpaceReconLoss, aligned_image_mask

__all__ = ['ImageTextContrastiveLoss', 'LanguageSpaceReconLoss', 'aligned_image_mask']
