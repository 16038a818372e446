"""RILS: masked visual reconstruction in language semantic space (Fig. 1)."""
from typing import Dict, List, Optional

import torch
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from .zero_shot import ZeroShotClassifierMixin, clip_data_preprocessor


@MODELS.register_module()
class RILS(ZeroShotClassifierMixin, BaseSelfSupervisor):
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
        if data_preprocessor is None:
            data_preprocessor = clip_data_preprocessor()
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=head,
            pretrained=pretrained,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        self.text_encoder = MODELS.build(text_encoder)
        self.register_buffer('zero_shot_weights', None, persistent=False)

    # ------------------------------------------------------------ encoders
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised image embeddings ``z^I`` (B, D), Eq. 4."""
        tokens = self.backbone.forward_intact(images)
        return self.head.embed_image(tokens[:, 1:])

    def encode_text(self, text_tokens: torch.Tensor) -> torch.Tensor:
        """Normalised text embeddings ``z^T`` (B, D), Eq. 4."""
        return self.head.embed_text(self.text_encoder(text_tokens))

    # ------------------------------------------------------------ training
    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        """Losses of one batch: images ``inputs`` (B, 3, H, W) and captions
        tokenised in ``data_samples[i].text_tokens``."""
        if isinstance(inputs, (list, tuple)):  # SelfSupDataPreprocessor views
            inputs = inputs[0]
        tokens = torch.stack([ds.text_tokens for ds in data_samples])
        return self.forward_train(inputs, tokens, **kwargs)

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

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        """``tensor``: backbone features; ``loss``: Eq. 10; ``predict``:
        zero-shot classification."""
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        return super().forward(inputs, data_samples, mode)
