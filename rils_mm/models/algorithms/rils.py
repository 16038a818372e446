"""RILS: masked visual reconstruction in language semantic space (Fig. 1)."""
from typing import Dict, Optional

import torch
from mmpretrain.registry import MODELS

from .image_text import ImageTextPretrainer


@MODELS.register_module()
class RILS(ImageTextPretrainer):
    """RILS (CVPR 2023): three Transformers trained end to end.

    One step (paper Sec. 3, Fig. 1):

    1. V-Enc encodes the intact image, ``f`` (Eq. 1), and a copy with
       ``mask_ratio`` of its patches randomly removed per sample, ``f^``.
    2. V-Dec (the ``neck``) decodes ``f^`` and [MASK] tokens into ``g``
       (Eq. 3).
    3. L-Enc encodes the caption, ``h`` (Eq. 2).
    4. The ``head`` projects into the joint space (Eqs. 4, 7) and computes
       ``lambda_1 L_contra + lambda_2 L_recon`` (Eqs. 5-6, 8-10).

    Inputs are images plus ``data_samples[i].text_tokens`` (tokenised
    captions, see :class:`TokenizeText`). In ``predict`` mode the model is a
    zero-shot classifier (:class:`ZeroShotClassifierMixin`; the
    :class:`ZeroShotClassifierHook` builds it before every evaluation).

    Args:
        backbone (dict): vision encoder (``RILSViT``).
        neck (dict): vision decoder (``RILSDecoder``).
        head (dict): ``RILSHead``.
        text_encoder (dict): ``CLIPTextEncoder``.
        data_preprocessor (dict, optional): defaults to mmpretrain's
            ``ClsDataPreprocessor`` with CLIP mean/std and BGR->RGB.
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 head: dict,
                 text_encoder: dict,
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone=backbone, neck=neck, head=head, text_encoder=text_encoder,
                         pretrained=pretrained, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)

    def forward_train(
            self,
            images: torch.Tensor,
            text_tokens: torch.Tensor,
            mask_noise: Optional[torch.Tensor] = None
    ) -> Dict[str, torch.Tensor]:
        """Eq. 10 for images (B, 3, H, W) and token ids (B, L).

        ``mask_noise`` (B, N) optionally fixes the random masking (the
        smallest values are kept), e.g. to compare runs exactly.
        """
        f = self.backbone.forward_intact(images)[:, 1:]  # (B, N, C), Eq. 1
        latent, mask, ids_restore = self.backbone(
            images, mask=True, noise=mask_noise)  # Eq. 1, masked view
        g = self.neck(latent, ids_restore)  # (B, N, C), Eq. 3
        h = self.text_encoder(text_tokens)  # (B, C_t), Eq. 2
        return self.head.loss(f, g, h, mask)
