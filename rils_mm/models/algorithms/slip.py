"""SLIP: CLIP plus SimCLR on two augmented views (Table 1)."""
from typing import Dict, List, Optional, Sequence

import torch
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from .zero_shot import CLIP_MEAN, CLIP_STD, ZeroShotClassifierMixin


@MODELS.register_module()
class SLIP(ZeroShotClassifierMixin, BaseSelfSupervisor):
    """SLIP (Mu et al., ECCV 2022), the self-supervised + language baseline.

    Each sample comes in three views (``MultiView`` in the data pipeline):
    the CLIP view (RILS' crop) and two SimCLR augmentations. One step:

    * ``L_contra`` (Eqs. 4-6, ``head``) on the CLIP view and the caption, as
      :class:`CLIP`;
    * ``L_ssl``: the two augmented views are encoded by the same V-Enc,
      mean-pooled over patches (the representation theta sees in Eq. 4),
      mapped by the 3-layer MLP ``ssl_neck`` (SLIP: 4096 hidden with SyncBN,
      256 out) and compared by SimCLR's NT-Xent (``ssl_loss``, tau 0.1);
    * ``L = L_contra + s * L_ssl`` with the SSL scale ``s`` (1.0) as the
      ``ssl_loss``'s ``loss_weight``.

    Args:
        backbone (dict): ``RILSViT``.
        head (dict): ``ImageTextContrastiveHead``.
        text_encoder (dict): ``CLIPTextEncoder``.
        ssl_neck (dict): the SimCLR MLP (mmpretrain's ``NonLinearNeck``).
        ssl_loss (dict): ``SimCLRLoss``.
        data_preprocessor (dict, optional): defaults to mmpretrain's
            ``SelfSupDataPreprocessor`` (normalises every view) with CLIP
            mean/std and BGR->RGB.
    """

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 text_encoder: dict,
                 ssl_neck: dict,
                 ssl_loss: dict = dict(type='SimCLRLoss', temperature=0.1, loss_weight=1.0),
                 neck: Optional[dict] = None,
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if neck is not None:
            raise ValueError('SLIP has no vision decoder: set `neck=None` (its MLP is '
                             f'`ssl_neck`), got neck={neck!r}')
        if data_preprocessor is None:
            data_preprocessor = dict(
                type='SelfSupDataPreprocessor', mean=CLIP_MEAN, std=CLIP_STD, to_rgb=True)
        super().__init__(
            backbone=backbone,
            head=head,
            pretrained=pretrained,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        self.text_encoder = MODELS.build(text_encoder)
        self.ssl_neck = MODELS.build(ssl_neck)
        self.ssl_loss = MODELS.build(ssl_loss)
        self.register_buffer('zero_shot_weights', None, persistent=False)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised image embeddings ``z^I`` (B, D), Eq. 4."""
        return self.head.embed_image(self.backbone.forward_intact(images)[:, 1:])

    def encode_text(self, text_tokens: torch.Tensor) -> torch.Tensor:
        """Normalised text embeddings ``z^T`` (B, D), Eq. 4."""
        return self.head.embed_text(self.text_encoder(text_tokens))

    def loss(self, inputs: Sequence[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        """Losses of one batch: ``inputs`` = [CLIP view, aug 1, aug 2], each
        (B, 3, H, W), and captions tokenised in ``data_samples[i].text_tokens``."""
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 3:
            got = (f'{len(inputs)} views' if isinstance(inputs, (list, tuple))
                   else f'one tensor of shape {tuple(inputs.shape)}')
            raise ValueError(
                'SLIP needs three views per sample (the CLIP view and two SimCLR '
                "augmentations): use dict(type='MultiView', num_views=[1, 2], ...) in the "
                f'train pipeline and SelfSupDataPreprocessor; got {got}')
        tokens = torch.stack([ds.text_tokens for ds in data_samples])
        return self.forward_train(inputs[0], inputs[1], inputs[2], tokens)

    def forward_train(self, images: torch.Tensor, aug1: torch.Tensor, aug2: torch.Tensor,
                      text_tokens: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``L_contra`` on (images, captions) and ``s * L_ssl`` on (aug1, aug2)."""
        f = self.backbone.forward_intact(images)[:, 1:]  # (B, N, C), Eq. 1
        h = self.text_encoder(text_tokens)  # Eq. 2
        losses = self.head.loss(f, h)
        pooled = self.backbone.forward_intact(torch.cat([aug1, aug2]))[:, 1:].mean(1)
        p1, p2 = pooled.chunk(2)
        # the MLP sees each view alone, so its BatchNorm statistics are per view (SLIP)
        e1, e2 = self.ssl_neck([p1])[0], self.ssl_neck([p2])[0]
        losses['loss_ssl'] = self.ssl_loss(e1, e2)
        return losses

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        """``tensor``: backbone features; ``loss``: L_contra + s L_ssl;
        ``predict``: zero-shot classification."""
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        return super().forward(inputs, data_samples, mode)
