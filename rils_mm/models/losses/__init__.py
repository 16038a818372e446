from .contrastive import ImageTextContrastiveLoss
from .recon import LanguageSpaceReconLoss, aligned_image_mask
from .simclr import SimCLRLoss

__all__ = ['ImageTextContrastiveLoss', 'LanguageSpaceReconLoss', 'aligned_image_mask', 'SimCLRLoss']
