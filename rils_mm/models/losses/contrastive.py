"""Image-text contrastive loss (InfoNCE), RILS Eqs. 5-6."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from ..utils import at_least_fp32, gather_features, local_offset, mean_value_local_grad


@MODELS.register_module()
class ImageTextContrastiveLoss(nn.Module):
    """Symmetric InfoNCE ``L_contra = (L_I2T + L_T2I) / 2`` (RILS Eqs. 5-6).

    Logits are ``<z^I_i, z^T_j> / sigma``; inputs are L2-normalised here
    (Eq. 4's ``||.||``) and the logits are computed in fp32 (float64 stays float64)
    with autocast off.

    How the batch is spread over ranks is set by two explicit flags, named as
    in open_clip's ``ClipLoss``:

    ============================  =============================================
    ``local_loss=True,``          **official** (hustvl/RILS and SLIP
    ``gather_with_grad=False``    ``CLIPLoss``): a plain ``all_gather`` with no
    (default)                     gradient on any slice, this rank's included;
                                  each rank takes its B images x the B_g
                                  texts and its B texts x the B_g images, labels
                                  offset by ``rank * B``; DDP averages. With
                                  more than one rank, images then get gradient
                                  only through L_I2T and texts only through
                                  L_T2I (the exact loss sends both terms to
                                  both): about half the full-batch gradient,
                                  in about the same direction.
    ``local_loss=False,``         **exact**: the gather carries gradient and
    ``gather_with_grad=True``     every rank evaluates the (B_g, B_g) matrix:
                                  the DDP-averaged gradient equals that of one
                                  process holding the global batch.
    ``local_loss=True,``          also exact (open_clip's recommended setting
    ``gather_with_grad=True``     at scale: local rows, global columns).
    ``local_loss=False,``         open_clip's default: the other ranks'
    ``gather_with_grad=False``    slices are constants, the own slice keeps
                                  its gradient (not the official behaviour).
    ============================  =============================================

    On one process every setting is the same loss with the same gradient
    (the gather returns its input). With ``local_loss`` the returned value is
    the mean of the ranks' losses (what DDP's average optimises) while each
    rank backpropagates its own.

    Args:
        loss_weight (float): lambda_1 of Eq. 10. Defaults to 1.0.
        local_loss (bool): rows of this rank only (see above). Defaults to
            True (official).
        gather_with_grad (bool): differentiable gather (see above). Defaults
            to False (official).
    """

    def __init__(self,
                 loss_weight: float = 1.0,
                 local_loss: bool = True,
                 gather_with_grad: bool = False) -> None:
        super().__init__()
        self.loss_weight = loss_weight
        self.local_loss = local_loss
        self.gather_with_grad = gather_with_grad

    def gather(self, embed: torch.Tensor) -> torch.Tensor:
        """The global batch (B_g, D) in rank order, gathered as the flags say."""
        return gather_features(embed, with_grad=self.gather_with_grad,
                               local_grad=not self.local_loss)

    def forward(self,
                image_embed: torch.Tensor,
                text_embed: torch.Tensor,
                logit_scale: torch.Tensor,
                all_image_embed: Optional[torch.Tensor] = None,
                all_text_embed: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Compute the weighted contrastive loss.

        Args:
            image_embed (Tensor): (B, D) image embeddings ``z^I`` of this rank.
            text_embed (Tensor): (B, D) paired text embeddings ``z^T``.
            logit_scale (Tensor | float): the multiplier ``1 / sigma``
                (already exponentiated).
            all_image_embed, all_text_embed (Tensor, optional): the global
                batch's embeddings from :meth:`gather`, if the caller has
                gathered them already (gathered here otherwise).

        Returns:
            Tensor: scalar ``loss_weight * L_contra``.
        """
        if all_image_embed is None:
            all_image_embed = self.gather(image_embed)
        if all_text_embed is None:
            all_text_embed = self.gather(text_embed)
        with torch.autocast(image_embed.device.type, enabled=False):
            all_image = F.normalize(at_least_fp32(all_image_embed), dim=-1)
            all_text = F.normalize(at_least_fp32(all_text_embed), dim=-1)
            if self.local_loss:
                image = F.normalize(at_least_fp32(image_embed), dim=-1)
                text = F.normalize(at_least_fp32(text_embed), dim=-1)
                logits_per_image = logit_scale * image @ all_text.t()  # (B, B_g)
                logits_per_text = logit_scale * text @ all_image.t()  # (B, B_g)
                labels = local_offset(image.shape[0]) + torch.arange(
                    image.shape[0], device=image.device)
            else:
                logits_per_image = logit_scale * all_image @ all_text.t()  # (B_g, B_g)
                logits_per_text = logits_per_image.t()
                labels = torch.arange(logits_per_image.shape[0],
                                      device=logits_per_image.device)
            loss = 0.5 * (F.cross_entropy(logits_per_image, labels) +
                          F.cross_entropy(logits_per_text, labels))
        loss = self.loss_weight * loss
        return mean_value_local_grad(loss) if self.local_loss else loss
