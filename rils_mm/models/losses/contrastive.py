"""Image-text contrastive loss (InfoNCE), RILS Eqs. 5-6."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from ..utils import gather_features, get_rank


@MODELS.register_module()
class ImageTextContrastiveLoss(nn.Module):
    """Symmetric InfoNCE over the global batch (RILS Eqs. 5-6).

    ``L_contra = (L_I2T + L_T2I) / 2`` with logits ``<z^I_i, z^T_j> / sigma``.
    Inputs are L2-normalised here (Eq. 4's ``||.||``) and computed in fp32.

    Across ranks the embeddings are gathered with gradient
    (:func:`gather_features`) and every rank evaluates the loss on the whole
    global batch, so the value is identical on all ranks and the (DDP-averaged)
    gradients equal those of one process holding the whole batch.

    Args:
        loss_weight (float): lambda_1 of Eq. 10. Defaults to 1.0.
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, image_embed: torch.Tensor, text_embed: torch.Tensor,
                logit_scale: torch.Tensor) -> torch.Tensor:
        """Compute the weighted contrastive loss.

        Args:
            image_embed (Tensor): (B, D) image embeddings of this rank.
            text_embed (Tensor): (B, D) paired text embeddings.
            logit_scale (Tensor | float): the multiplier ``1 / sigma``
                (already exponentiated).

        Returns:
            Tensor: scalar ``loss_weight * L_contra``.
        """
        image_embed = F.normalize(image_embed.float(), dim=-1)
        text_embed = F.normalize(text_embed.float(), dim=-1)
        all_image = gather_features(image_embed)
        all_text = gather_features(text_embed)
        logits = logit_scale * all_image @ all_text.t()  # (B_g, B_g)
        labels = torch.arange(logits.shape[0], device=logits.device)
        loss = 0.5 * (F.cross_entropy(logits, labels) +
                      F.cross_entropy(logits.t(), labels))
        return self.loss_weight * loss


def aligned_image_mask(image_embed: torch.Tensor,
                       all_text_embed: torch.Tensor) -> torch.Tensor:
    """The set C of Eq. 9 for this rank's images.

    An image is *correctly matched* when its most similar text in the global
    batch is its own caption (image-to-text arg-max).

    Args:
        image_embed (Tensor): (B, D) this rank's image embeddings.
        all_text_embed (Tensor): (B_g, D) the global batch's text embeddings,
            in rank order (this rank's captions at ``rank * B``).

    Returns:
        Tensor: (B,) bool.
    """
    with torch.no_grad():
        sim = image_embed.float() @ all_text_embed.float().t()
        own = get_rank() * image_embed.shape[0] + torch.arange(
            image_embed.shape[0], device=image_embed.device)
        return sim.argmax(dim=1) == own
