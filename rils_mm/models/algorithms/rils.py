"""RILS: masked visual reconstruction in language semantic space (Fig. 1)."""
from typing import Dict, Optional

import torch
from mmpretrain.registry import MODELS

from ..utils import all_reduce_sum, get_world_size
from ..utils.grad_cache import StepContext
from .image_text import ImageTextPretrainer


@MODELS.register_module()
class RILS(ImageTextPretrainer):
    """RILS (CVPR 2023): three Transformers trained end to end.

    One step (paper Sec. 3, Fig. 1):

    1. V-Enc encodes the intact image, ``f`` (Eq. 1); L-Enc encodes the
       caption, ``h`` (Eq. 2).
    2. The ``head`` projects both into the joint space (Eq. 4), computes
       ``lambda_1 L_contra`` (Eqs. 5-6) and finds the correctly matched
       images ``C``.
    3. V-Enc encodes a copy of each image (of ``C`` only, see
       ``decode_aligned_only``) with ``mask_ratio`` of its patches randomly
       removed, ``f^``; V-Dec (the ``neck``) decodes ``f^`` and [MASK] tokens
       into ``g`` (Eq. 3).
    4. The ``head`` adds ``lambda_2 L_recon`` on the masked patches ``M`` of
       ``C`` in language space (Eqs. 7-9); the sum is Eq. 10.

    Inputs are images plus ``data_samples[i].text_tokens`` (tokenised
    captions, see :class:`TokenizeText`). In ``predict`` mode the model is a
    zero-shot classifier (:class:`ZeroShotClassifierMixin`; the
    :class:`ZeroShotClassifierHook` builds it before every evaluation).

    Args:
        backbone (dict): vision encoder (``RILSViT``).
        neck (dict): vision decoder (``RILSDecoder``).
        head (dict): ``RILSHead``.
        text_encoder (dict): ``CLIPTextEncoder``.
        decode_aligned_only (bool): run the masked view and V-Dec only for
            the correctly matched images ``C``: L_recon (Eq. 9) reads no other
            image's ``g``, so their masked branch has an exactly zero gradient
            and is skipped (when ``C`` is empty, one image outside it is
            decoded, never an empty batch). The losses and gradients are those
            of decoding every image (tested). The masked branch then costs
            ``|C_r| / B`` of its full price on each rank; the logged
            ``aligned_ratio`` is the global ``|C| / B``, and under DDP the
            slowest rank sets the pace. Defaults to True. With dropout or drop
            path in the encoder or decoder (0 in the paper's pre-training) the
            skipped images draw no random numbers, so the random stream
            differs from False.
        grad_cache (dict, optional): ``dict(micro_batch_size=M)``, see
            :class:`ImageTextPretrainer`; every micro-batch has its own C
            (as a rank has) and L_recon normaliser ``|C_k| |M|`` (official
            ``local_loss``), or the global one.
        data_preprocessor (dict, optional): defaults to mmpretrain's
            ``ClsDataPreprocessor`` with CLIP mean/std and BGR->RGB.
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 head: dict,
                 text_encoder: dict,
                 decode_aligned_only: bool = True,
                 grad_cache: Optional[dict] = None,
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone=backbone, neck=neck, head=head, text_encoder=text_encoder,
                         grad_cache=grad_cache, pretrained=pretrained,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.decode_aligned_only = decode_aligned_only

    def check_grad_cache(self) -> None:
        """Also refuse L_recon into the prototypes (``text_grad_in_recon``)."""
        super().check_grad_cache()
        if getattr(self.head, 'text_grad_in_recon', False):
            raise ValueError(
                'grad_cache: RILSHead(text_grad_in_recon=True) sends every micro-batch\'s '
                'L_recon into the texts of all the others, which would need the text '
                'tower\'s backward after all micro-batches; use text_grad_in_recon=False '
                '(the official multi-GPU behaviour)')

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
        if mask_noise is None:  # drawn for all B first: neither C nor K moves the masks
            mask_noise = torch.rand(images.shape[0], self.backbone.num_patches,
                                    device=images.device)
        return self.train_losses(
            dict(images=images, text_tokens=text_tokens, mask_noise=mask_noise))

    def batch_losses(self, embeds, virtual_ranks: int = 1):
        """``lambda_1 L_contra``, the set ``C`` and the prototypes of Eq. 8
        (and L_recon's global normaliser, when ``virtual_ranks`` > 1 and the
        loss has one)."""
        losses, prototypes, aligned = self.head.contrastive_and_aligned_embedded(
            embeds['z_image'], embeds['z_text'], virtual_ranks=virtual_ranks)
        context = StepContext(shared=dict(prototypes=prototypes, avg_factor=None),
                              per_sample=dict(aligned=aligned))
        if virtual_ranks > 1 and not self.head.recon_loss.local_loss:
            count = all_reduce_sum(aligned.sum().float() * self.backbone.num_masked)
            context.shared['avg_factor'] = (count / get_world_size()).item()
        return losses, context

    def micro_batch_losses(self, batch, aux, context, virtual_ranks: int = 1):
        """``lambda_2 L_recon`` (Eqs. 7-9) of these images: the masked view,
        V-Dec and the language-space targets of the images in ``C``."""
        images, mask_noise, f = batch['images'], batch['mask_noise'], aux['f']
        aligned = context.per_sample['aligned']
        if self.decode_aligned_only:  # only i in C reaches L_recon (Eq. 9)
            keep = aligned.clone()
            if not keep.any():
                # no empty batch: some GPU attention kernels (flash, cuDNN)
                # reject batch 0; image 0, outside C, adds exactly 0 to L_recon
                keep[0] = True
            images, mask_noise, f, aligned = (
                t[keep] for t in (images, mask_noise, f, aligned))
        latent, mask, ids_restore = self.backbone(
            images, mask=True, noise=mask_noise)  # Eq. 1, masked view
        g = self.neck(latent, ids_restore)  # (B', N, C), Eq. 3
        avg_factor = context.shared['avg_factor']
        losses = self.head.recon(f, g, context.shared['prototypes'], mask, aligned,
                                 avg_factor=avg_factor)
        if avg_factor is None and virtual_ranks > 1:  # per-micro-batch normaliser
            losses = {k: v / virtual_ranks for k, v in losses.items()}
        return losses
