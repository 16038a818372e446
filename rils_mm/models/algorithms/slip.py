"""SLIP: CLIP plus SimCLR on two augmented views (Table 1)."""
from typing import Dict, List, Optional, Sequence

import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from .image_text import ImageTextPretrainer


@MODELS.register_module()
class SLIP(ImageTextPretrainer):
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

    data_preprocessor_type = 'SelfSupDataPreprocessor'

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 text_encoder: dict,
                 ssl_neck: dict,
                 ssl_loss: dict = dict(type='SimCLRLoss', temperature=0.1, loss_weight=1.0),
                 neck: Optional[dict] = None,
                 grad_cache: Optional[dict] = None,
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if neck is not None:
            raise ValueError('SLIP has no vision decoder: set `neck=None` (its MLP is '
                             f'`ssl_neck`), got neck={neck!r}')
        super().__init__(backbone=backbone, head=head, text_encoder=text_encoder,
                         grad_cache=grad_cache, pretrained=pretrained,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.ssl_neck = MODELS.build(ssl_neck)
        self.ssl_loss = MODELS.build(ssl_loss)

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
        return self.forward_train(*inputs, self.text_tokens(data_samples))


    def forward_train(self, images: torch.Tensor, aug1: torch.Tensor, aug2: torch.Tensor,
                      text_tokens: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``L_contra`` on (images, captions) and ``s * L_ssl`` on (aug1, aug2)."""
        return self.train_losses(
            dict(images=images, aug1=aug1, aug2=aug2, text_tokens=text_tokens))

    def embed(self, batch):
        """``z^I``, ``z^T`` (Eq. 4) and the mean-pooled patch tokens of the two
        augmented views (what the SSL MLP sees)."""
        embeds, aux = super().embed(batch)
        views = torch.cat([batch['aug1'], batch['aug2']])
        pooled = self.backbone.forward_intact(views)[:, 1:].mean(1)
        embeds['pooled_1'], embeds['pooled_2'] = pooled.chunk(2)
        return embeds, aux

    def batch_losses(self, embeds, virtual_ranks: int = 1):
        """``lambda_1 L_contra`` and ``s * L_ssl`` over the global batch.

        The MLP sees each view of each virtual rank alone, so its BatchNorm
        statistics are per view and per rank (SLIP); with SyncBN they are
        synchronised over the real ranks' micro-batches of the same index.
        """
        losses, context = super().batch_losses(embeds, virtual_ranks=virtual_ranks)
        e1, e2 = (torch.cat([self.ssl_neck([p])[0]
                             for p in embeds[name].chunk(virtual_ranks)])
                  for name in ('pooled_1', 'pooled_2'))
        losses['loss_ssl'] = self.ssl_loss(e1, e2)
        return losses, context
