"""CLIP: image-text contrastive learning only (Fig. 2 of the RILS paper)."""
from typing import Optional

import torch
from mmpretrain.registry import MODELS

from .image_text import ImageTextPretrainer


# force: without transformers/pycocotools (the lite setup, tools/setup_env.sh --lite)
# mmpretrain registers an ImportError-raising placeholder under the name 'CLIP'; its
# real CLIP class is never registered under that name, so nothing else is replaced.
@MODELS.register_module(force=True)
class CLIP(ImageTextPretrainer):
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
                 grad_cache: Optional[dict] = None,
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if neck is not None:
            raise ValueError(
                'CLIP has no vision decoder: set `neck=None` in the model config '
                f'(got neck={neck!r})')
        super().__init__(backbone=backbone, head=head, text_encoder=text_encoder,
                         grad_cache=grad_cache, pretrained=pretrained,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
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

    def embed(self, batch):
        """``z^I``, ``z^T`` (Eqs. 1, 2, 4); a locked backbone runs without gradient."""
        if not self.freeze_backbone:
            return super().embed(batch)
        with torch.no_grad():
            f = self.backbone.forward_intact(batch['images'])[:, 1:]
        h = self.text_encoder(batch['text_tokens'])
        return dict(z_image=self.head.embed_image(f), z_text=self.head.embed_text(h)), dict(f=f)
