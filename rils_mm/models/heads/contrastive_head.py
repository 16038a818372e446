"""Projections into the joint space and the image-text contrastive objective."""
import math
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS


@MODELS.register_module()
class ImageTextContrastiveHead(BaseModule):
    """theta, phi, the learnable temperature sigma and L_contra (Eqs. 4-6).

    Shared by every method with a text tower (CLIP, MAE+CLIP, SLIP, RILS):

    * theta (``image_projection``): linear ``vision_dims -> embed_dims``,
      applied to the mean-pooled patch tokens (Eq. 4); RILS applies the same
      theta to every patch feature of both views (Eq. 7).
    * phi (``text_projection``): linear ``text_dims -> embed_dims`` (Eq. 4).
    * ``logit_scale``: log of ``1 / sigma``, initialised to ``log(1/0.07)``
      and clamped to ``log(logit_scale_max)`` after every optimizer step by
      :class:`LogitScaleClampHook` (and at use).

    Args:
        vision_dims (int): encoder width C. Defaults to 768.
        text_dims (int): text width. Defaults to 512.
        embed_dims (int): joint space width. Defaults to 512.
        init_logit_scale (float): initial ``1 / sigma``. Defaults to 1/0.07.
        logit_scale_max (float): clamp of ``1 / sigma``. Defaults to 100.
        contrastive_loss (dict): config of the Eq. 5-6 loss (lambda_1 is its
            ``loss_weight``).
    """

    def __init__(self,
                 vision_dims: int = 768,
                 text_dims: int = 512,
                 embed_dims: int = 512,
                 init_logit_scale: float = 1 / 0.07,
                 logit_scale_max: float = 100.0,
                 contrastive_loss: dict = dict(type='ImageTextContrastiveLoss'),
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.image_projection = nn.Linear(vision_dims, embed_dims, bias=False)
        self.text_projection = nn.Linear(text_dims, embed_dims, bias=False)
        self.logit_scale = nn.Parameter(
            torch.tensor(math.log(init_logit_scale)))
        self.logit_scale_max = logit_scale_max
        self.contrastive_loss = MODELS.build(contrastive_loss)

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

    def contrastive(
        self, z_image: torch.Tensor, z_text: torch.Tensor, virtual_ranks: int = 1
    ) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        """Eqs. 5-6 on embedded inputs; gathers the global batch once.

        Args:
            z_image, z_text (Tensor): (B, D) this rank's embeddings (Eq. 4).
            virtual_ranks (int): this rank's batch is that many ranks' batches
                (``grad_cache``'s micro-batches). Without ``gather_with_grad``
                the gathered batch is then a constant even on one process, as
                on that many real ranks; the rank's local-rows loss is already
                the mean of its virtual ranks' losses.

        Returns:
            tuple: the losses dict (``loss_contrastive`` and the logged
            ``logit_scale``) and the global batch's text embeddings ``z^T``
            (B_g, D) in rank order, for losses that reuse them (gathered as
            the contrastive loss's flags say: without gradient in the official
            setting).
        """
        all_image = self.contrastive_loss.gather(z_image)
        all_text = self.contrastive_loss.gather(z_text)
        if virtual_ranks > 1 and not self.contrastive_loss.gather_with_grad:
            all_image, all_text = all_image.detach(), all_text.detach()
        logit_scale = self.get_logit_scale()
        losses = dict(
            loss_contrastive=self.contrastive_loss(
                z_image, z_text, logit_scale, all_image_embed=all_image,
                all_text_embed=all_text),
            logit_scale=logit_scale.detach())
        return losses, all_text

    def loss(self, patch_tokens: torch.Tensor,
             text_feats: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``lambda_1 L_contra`` from (B, N, C) patch tokens ``f`` and (B, C_t)
        text features ``h``."""
        losses, _ = self.contrastive(
            self.embed_image(patch_tokens), self.embed_text(text_feats))
        return losses
