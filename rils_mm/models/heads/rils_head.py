"""Projections into the joint space and the two RILS objectives."""
import math
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from ..losses import aligned_image_mask
from ..utils import all_reduce_sum, gather_features, get_world_size


@MODELS.register_module()
class RILSHead(BaseModule):
    """Owns theta, phi and the learnable temperature; computes Eq. 10.

    * theta: linear ``vision_dims -> embed_dims`` shared by the pooled image
      feature (Eq. 4) and by every patch feature of both views (Eq. 7).
    * phi: linear ``text_dims -> embed_dims`` (Eq. 4).
    * ``logit_scale``: log of ``1 / sigma``, initialised to ``log(1/0.07)``
      and clamped to ``log(logit_scale_max)`` after every optimizer step by
      :class:`LogitScaleClampHook` (and at use).

    Args:
        vision_dims (int): encoder width C. Defaults to 768.
        text_dims (int): text width. Defaults to 512.
        embed_dims (int): joint space width. Defaults to 512.
        init_logit_scale (float): initial ``1 / sigma``. Defaults to 1/0.07.
        logit_scale_max (float): clamp of ``1 / sigma``. Defaults to 100.
        contrastive_loss (dict): config of the Eq. 5-6 loss.
        recon_loss (dict): config of the Eq. 8-9 loss.
        text_grad_in_recon (bool): let the reconstruction loss backpropagate
            into the text prototypes. Defaults to False (they are detached).
    """

    def __init__(self,
                 vision_dims: int = 768,
                 text_dims: int = 512,
                 embed_dims: int = 512,
                 init_logit_scale: float = 1 / 0.07,
                 logit_scale_max: float = 100.0,
                 contrastive_loss: dict = dict(
                     type='ImageTextContrastiveLoss', loss_weight=1.0),
                 recon_loss: dict = dict(
                     type='LanguageSpaceReconLoss',
                     target_temperature=0.04,
                     pred_temperature=0.1,
                     loss_weight=0.5),
                 text_grad_in_recon: bool = False,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.image_projection = nn.Linear(vision_dims, embed_dims, bias=False)
        self.text_projection = nn.Linear(text_dims, embed_dims, bias=False)
        self.logit_scale = nn.Parameter(
            torch.tensor(math.log(init_logit_scale)))
        self.logit_scale_max = logit_scale_max
        self.contrastive_loss = MODELS.build(contrastive_loss)
        self.recon_loss = MODELS.build(recon_loss) if recon_loss else None
        self.text_grad_in_recon = text_grad_in_recon

    def init_weights(self) -> None:
        """CLIP/SLIP initialisation of the projections (std width^-0.5)."""
        super().init_weights()
        nn.init.normal_(self.image_projection.weight,
                        std=self.image_projection.in_features**-0.5)
        nn.init.normal_(self.text_projection.weight,
                        std=self.text_projection.in_features**-0.5)

    @torch.no_grad()
    def clamp_logit_scale(self) -> None:
        """Clamp ``1 / sigma`` to ``[1, logit_scale_max]`` in place."""
        self.logit_scale.clamp_(0, math.log(self.logit_scale_max))

    def get_logit_scale(self) -> torch.Tensor:
        """The multiplier ``1 / sigma`` of Eq. 5 (clamped)."""
        return self.logit_scale.exp().clamp(max=self.logit_scale_max)

    def embed_image(self, patch_tokens: torch.Tensor) -> torch.Tensor:
        """Eq. 4: ``z^I = ||theta(mean_k f^k)||`` from (B, N, C) patch tokens."""
        return F.normalize(self.image_projection(patch_tokens.mean(1)), dim=-1)

    def embed_text(self, text_feats: torch.Tensor) -> torch.Tensor:
        """Eq. 4: ``z^T = ||phi(h)||``."""
        return F.normalize(self.text_projection(text_feats), dim=-1)

    def loss(self, patch_tokens: torch.Tensor, pred_tokens: torch.Tensor,
             text_feats: torch.Tensor,
             mask: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Eq. 10 from the encoder/decoder/text outputs.

        Args:
            patch_tokens (Tensor): (B, N, C) intact-view patch tokens ``f``.
            pred_tokens (Tensor): (B, N, C) decoded tokens ``g``.
            text_feats (Tensor): (B, C_t) text features ``h``.
            mask (Tensor): (B, N), 1 marks the masked patches ``M``.

        Returns:
            dict: ``loss_contrastive``, ``loss_recon`` (weighted by lambda_1,
            lambda_2) and the logging scalars ``logit_scale`` and
            ``aligned_ratio`` (|C| / B_global).
        """
        z_image = self.embed_image(patch_tokens)
        z_text = self.embed_text(text_feats)
        logit_scale = self.get_logit_scale()
        losses = dict(
            loss_contrastive=self.contrastive_loss(z_image, z_text,
                                                   logit_scale))

        all_text = gather_features(
            z_text if self.text_grad_in_recon else z_text.detach(),
            with_grad=self.text_grad_in_recon)
        aligned = aligned_image_mask(z_image, all_text)
        num_aligned = all_reduce_sum(aligned.sum().float())
        if self.recon_loss is not None:
            # |C| |M| over the global batch; each rank contributes its share so
            # that the mean over ranks (DDP's gradient average) is Eq. 9.
            num_masked = mask[0].sum()
            avg_factor = (num_aligned * num_masked / get_world_size()).item()
            share = self.recon_loss(
                self.image_projection(pred_tokens),
                self.image_projection(patch_tokens),
                all_text,
                mask,
                aligned,
                avg_factor=avg_factor)
            if get_world_size() > 1:
                # Report the global-batch value on every rank (logs show rank
                # 0's) while keeping this rank's share as the gradient.
                value = all_reduce_sum(share.detach()) / get_world_size()
                share = share + (value - share.detach())
            losses['loss_recon'] = share
        losses['logit_scale'] = logit_scale.detach()
        losses['aligned_ratio'] = num_aligned / (
            aligned.numel() * get_world_size())
        return losses
