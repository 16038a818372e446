"""MAE+CLIP: pixel reconstruction and image-text contrast, summed (Fig. 2, Table 10)."""
from typing import Dict, Optional

import torch
from mmpretrain.registry import MODELS

from .image_text import ImageTextPretrainer


@MODELS.register_module()
class MAECLIP(ImageTextPretrainer):
    """The naive combination of MAE and CLIP the paper compares RILS with.

    One step (Fig. 2, "MAE+CLIP"; Table 10, "raw pixel space"):

    1. V-Enc encodes the intact image ``f`` (Eq. 1) and the masked view.
    2. The decoder (the ``neck``, RILS' 1-block decoder with a pixel output)
       predicts the pixels of every patch from the masked view.
    3. L-Enc encodes the caption ``h`` (Eq. 2).
    4. ``L = L_contra + w_pix * L_pix``: the contrastive loss of the intact
       view (Eqs. 4-6, ``head``) plus MAE's loss on the masked patches,
       ``L_pix = mean_{i, k in M} ||pred_i^k - norm(x_i^k)||^2 / (p^2 * 3)``
       with per-patch normalised pixels (``pixel_head``, mmpretrain's
       ``MAEPretrainHead``).

    Everything else (encoder, masking, decoder size, text encoder, data) is
    RILS', so MAE+CLIP and RILS differ only in the reconstruction space.

    Args:
        backbone (dict): ``RILSViT``.
        neck (dict): the pixel decoder (``RILSDecoder`` or
            ``MAEPretrainDecoder`` with ``predict_feature_dim = p * p * 3``).
        head (dict): ``ImageTextContrastiveHead``.
        pixel_head (dict): ``MAEPretrainHead`` (``norm_pix=True``).
        text_encoder (dict): ``CLIPTextEncoder``.
        pixel_loss_weight (float): ``w_pix``. Defaults to 1.0 (a plain sum).
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 head: dict,
                 pixel_head: dict,
                 text_encoder: dict,
                 pixel_loss_weight: float = 1.0,
                 grad_cache: Optional[dict] = None,
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone=backbone, neck=neck, head=head, text_encoder=text_encoder,
                         grad_cache=grad_cache, pretrained=pretrained,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.pixel_head = MODELS.build(pixel_head)
        self.pixel_loss_weight = pixel_loss_weight

    def forward_train(
            self,
            images: torch.Tensor,
            text_tokens: torch.Tensor,
            mask_noise: Optional[torch.Tensor] = None
    ) -> Dict[str, torch.Tensor]:
        """``L_contra`` (intact view) and ``w_pix * L_pix`` (masked view)."""
        if mask_noise is None:  # drawn for all B first: K does not move the masks
            mask_noise = torch.rand(images.shape[0], self.backbone.num_patches,
                                    device=images.device)
        return self.train_losses(
            dict(images=images, text_tokens=text_tokens, mask_noise=mask_noise))

    def micro_batch_losses(self, batch, aux, context, virtual_ranks: int = 1):
        """``w_pix * L_pix`` of these images (its mean over their masked
        patches; one per virtual rank, averaged)."""
        images = batch['images']
        latent, mask, ids_restore = self.backbone(images, mask=True, noise=batch['mask_noise'])
        pred = self.neck(latent, ids_restore)  # (B, N, p * p * 3) pixels
        loss = self.pixel_loss_weight * self.pixel_head.loss(pred, images, mask)
        return dict(loss_pixel=loss / virtual_ranks if virtual_ranks > 1 else loss)
