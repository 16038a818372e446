"""CLIP: image-text contrastive learning only (Fig. 2 of the RILS paper)."""
from typing import Dict, List, Optional

import torch
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from .zero_shot import ZeroShotClassifierMixin, clip_data_preprocessor


# force: without transformers/pycocotools (the lite setup, tools/setup_env.sh --lite)
# mmpretrain registers an ImportError-raising placeholder under the name 'CLIP'; its
# real CLIP class is never registered under that name, so nothing else is replaced.
@MODELS.register_module(force=True)
class CLIP(ZeroShotClassifierMixin, BaseSelfSupervisor):
    """CLIP baseline: the RILS model without the masked view and decoder.

    One step encodes the *intact* image with V-Enc (``f``, Eq. 1) and the
    caption with L-Enc (``h``, Eq. 2); the head projects both into the joint
    space with theta and phi (Eq. 4) and computes ``lambda_1 L_contra``
    (Eqs. 5-6). No masked view is encoded and there is no decoder, so a step
    costs only the intact-view encoder and the text encoder.

    Same encoder, text encoder, head, data and zero-shot classifier as
    :class:`RILS`, so the two differ only in the method.

    Args:
        backbone (dict): vision encoder (``RILSViT``).
        head (dict): ``ImageTextContrastiveHead``.
        text_encoder (dict): ``CLIPTextEncoder``.
        neck (None): CLIP has no decoder; anything but ``None`` is an error
            (configs inheriting a RILS config set ``neck=None``).
        freeze_backbone (bool): lock the image encoder (LiT, "locked-image
            text tuning", used by the MIM->LiT two-stage baseline): it stays
            in eval mode and its parameters get no gradient. theta, phi,
            sigma and the text encoder are trained. Defaults to False.
        data_preprocessor (dict, optional): defaults to mmpretrain's
            ``ClsDataPreprocessor`` with CLIP mean/std and BGR->RGB.
    """

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 text_encoder: dict,
                 neck: Optional[dict] = None,
                 freeze_backbone: bool = False,
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if neck is not None:
            raise ValueError(
                'CLIP has no vision decoder: set `neck=None` in the model config '
                f'(got neck={neck!r})')
        if data_preprocessor is None:
            data_preprocessor = clip_data_preprocessor()
        super().__init__(
            backbone=backbone,
            head=head,
            pretrained=pretrained,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        self.text_encoder = MODELS.build(text_encoder)
        self.register_buffer('zero_shot_weights', None, persistent=False)
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def train(self, mode: bool = True) -> 'CLIP':
        """Keep a locked backbone in eval mode (no dropout / drop-path)."""
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

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
        """``lambda_1 L_contra`` of one batch: images (B, 3, H, W) and
        captions tokenised in ``data_samples[i].text_tokens``."""
        if isinstance(inputs, (list, tuple)):  # SelfSupDataPreprocessor views
            inputs = inputs[0]
        tokens = torch.stack([ds.text_tokens for ds in data_samples])
        return self.forward_train(inputs, tokens)

    def forward_train(self, images: torch.Tensor,
                      text_tokens: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Eqs. 1, 2, 4-6 for images (B, 3, H, W) and token ids (B, L)."""
        if self.freeze_backbone:
            with torch.no_grad():
                f = self.backbone.forward_intact(images)[:, 1:]
        else:
            f = self.backbone.forward_intact(images)[:, 1:]  # (B, N, C), Eq. 1
        h = self.text_encoder(text_tokens)  # (B, C_t), Eq. 2
        return self.head.loss(f, h)

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        """``tensor``: backbone features; ``loss``: L_contra; ``predict``:
        zero-shot classification."""
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        return super().forward(inputs, data_samples, mode)
