"""Image-text contrastive loss (InfoNCE), RILS Eqs. 5-6."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from ..utils import gather_features


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

    def forward(self,
                image_embed: torch.Tensor,
                text_embed: torch.Tensor,
                logit_scale: torch.Tensor,
                all_image_embed: Optional[torch.Tensor] = None,
                all_text_embed: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Compute the weighted contrastive loss.

        Args:
            image_embed (Tensor): (B, D) image embeddings of this rank.
            text_embed (Tensor): (B, D) paired text embeddings.
            logit_scale (Tensor | float): the multiplier ``1 / sigma``
                (already exponentiated).
            all_image_embed, all_text_embed (Tensor, optional): the global
                batch's embeddings in rank order, if the caller has gathered
                them already (gathered here otherwise).

        Returns:
            Tensor: scalar ``loss_weight * L_contra``.
        """
        if all_image_embed is None:
            all_image_embed = gather_features(image_embed)
        if all_text_embed is None:
            all_text_embed = gather_features(text_embed)
        all_image = F.normalize(all_image_embed.float(), dim=-1)
        all_text = F.normalize(all_text_embed.float(), dim=-1)
        logits = logit_scale * all_image @ all_text.t()  # (B_g, B_g)
        labels = torch.arange(logits.shape[0], device=logits.device)
        loss = 0.5 * (F.cross_entropy(logits, labels) +
                      F.cross_entropy(logits.t(), labels))
        return self.loss_weight * loss

