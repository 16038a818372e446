from .contrastive import ImageTextContrastiveLoss, aligned_image_mask
from .recon import LanguageSpaceReconLoss

__all__ = ['ImageTextContrastiveLoss', 'LanguageSpaceReconLoss', 'aligned_image_mask']
