"""The RILS head: the contrastive head plus reconstruction in language space."""
from typing import Dict, Optional, Tuple

import torch
from mmpretrain.registry import MODELS

from ..losses import aligned_image_mask
from ..utils import all_reduce_sum, gather_features, get_world_size
from .contrastive_head import ImageTextContrastiveHead


@MODELS.register_module()
class RILSHead(ImageTextContrastiveHead):
    """:class:`ImageTextContrastiveHead` plus L_recon: Eq. 10.

    theta projects the patch features of both views as well (Eq. 7); the
    global batch's text embeddings ``z^T`` are the prototypes of the language
    space (Eq. 8), and the reconstruction loss is taken on the masked patches
    ``M`` of the correctly matched images ``C`` (Eq. 9).

    Args:
        recon_loss (dict): config of the Eq. 8-9 loss (tau_1, tau_2 and
            lambda_2 default to the paper's in the loss class).
        text_grad_in_recon (bool): let the reconstruction loss backpropagate
            into the text prototypes ``z^T`` (of the whole global batch).
            Defaults to False: they are detached, which is what the official
            code does on more than one GPU (its gathered texts carry no
            gradient). On a single GPU the official code does let L_recon reach
            this GPU's texts; we do not, so that the objective does not depend
            on the number of GPUs.
        fixed_aligned (int, optional): for measurements only: take the first
            ``fixed_aligned`` images of every batch as ``C`` instead of finding
            them (Eq. 9), so that the work of the masked branch (``RILS``'
            ``decode_aligned_only``) does not depend on how well the model
            matches yet (``tools/benchmark_train.py --aligned-ratio``).
            Defaults to None: ``C`` as the paper defines it.
        **kwargs: see :class:`ImageTextContrastiveHead`.
    """

    def __init__(self,
                 recon_loss: dict = dict(type='LanguageSpaceReconLoss'),
                 text_grad_in_recon: bool = False,
                 fixed_aligned: Optional[int] = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if fixed_aligned is not None and fixed_aligned < 1:
            raise ValueError(f'RILSHead: fixed_aligned must be None or >= 1, got '
                             f'{fixed_aligned}')
        self.recon_loss = MODELS.build(recon_loss)
        self.text_grad_in_recon = text_grad_in_recon
        self.fixed_aligned = fixed_aligned

    def recon_prototypes(self, all_text: torch.Tensor) -> torch.Tensor:
        """The prototypes of Eq. 8: the global batch's text embeddings ``z^T``
        (the Table 10 ablation replaces them, :class:`VisionSpaceReconHead`)."""
        return all_text

    def contrastive_and_recon(self, patch_tokens: torch.Tensor, pred_tokens: torch.Tensor,
                              text_feats: torch.Tensor,
                              mask: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Eq. 10 from the encoder/decoder/text outputs of every image (the
        parent's :meth:`loss` is Eqs. 5-6 alone and keeps its signature).

        Args:
            patch_tokens (Tensor): (B, N, C) intact-view patch tokens ``f``.
            pred_tokens (Tensor): (B, N, C) decoded tokens ``g``.
            text_feats (Tensor): (B, C_t) text features ``h``.
            mask (Tensor): (B, N), 1 marks the masked patches ``M``.

        Returns:
            dict: ``loss_contrastive`` (lambda_1 L_contra), ``loss_recon``
            (lambda_2 L_recon, the KL value as the official code logs it) and
            the logging scalars ``recon_ce`` (lambda_2 times the cross-entropy
            ``-sum p log q``, i.e. ``loss_recon`` + lambda_2 H(p)),
            ``logit_scale`` and ``aligned_ratio`` (``|C| / B_global``).
        """
        losses, prototypes, aligned = self.contrastive_and_aligned(
            patch_tokens, text_feats)
        losses.update(self.recon(patch_tokens, pred_tokens, prototypes, mask, aligned))
        return losses

    def contrastive_and_aligned(
        self, patch_tokens: torch.Tensor, text_feats: torch.Tensor
    ) -> Tuple[Dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """The half of Eq. 10 that needs no decoder: ``lambda_1 L_contra``
        (Eqs. 4-6), the prototypes of Eq. 8 and the set ``C`` of Eq. 9.

        Only the images in ``C`` reach L_recon, so :class:`RILS` can decode
        just those (its ``decode_aligned_only``).

        Args:
            patch_tokens (Tensor): (B, N, C) intact-view patch tokens ``f``.
            text_feats (Tensor): (B, C_t) text features ``h``.

        Returns:
            tuple: the losses dict (``loss_contrastive``, ``logit_scale``,
            ``aligned_ratio``), the prototypes (T, D) and ``aligned`` (B,)
            bool, this rank's images in ``C``.
        """
        return self.contrastive_and_aligned_embedded(
            self.embed_image(patch_tokens), self.embed_text(text_feats))

    def contrastive_and_aligned_embedded(
        self, z_image: torch.Tensor, z_text: torch.Tensor, virtual_ranks: int = 1
    ) -> Tuple[Dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """:meth:`contrastive_and_aligned` from the embeddings ``z^I``, ``z^T``
        (B, D) of Eq. 4 (``virtual_ranks``: see :meth:`contrastive`)."""
        losses, all_text = self.contrastive(z_image, z_text, virtual_ranks=virtual_ranks)
        if not self.text_grad_in_recon:
            all_text = all_text.detach()
        elif get_world_size() > 1 and not self.contrastive_loss.gather_with_grad:
            all_text = gather_features(z_text, with_grad=True)
        aligned = self.aligned_images(z_image, all_text)  # the set C
        losses['aligned_ratio'] = all_reduce_sum(aligned.sum().float()) / (
            aligned.numel() * get_world_size())
        return losses, self.recon_prototypes(all_text), aligned

    def aligned_images(self, z_image: torch.Tensor,
                       all_text: torch.Tensor) -> torch.Tensor:
        """The set ``C`` of Eq. 9: this rank's images (B,) whose most similar
        text of the global batch is their own (:func:`aligned_image_mask`), or
        the first ``fixed_aligned`` images when that is set."""
        if self.fixed_aligned is not None:
            aligned = torch.zeros(z_image.shape[0], dtype=torch.bool, device=z_image.device)
            aligned[:self.fixed_aligned] = True
            return aligned
        return aligned_image_mask(z_image, all_text)

    def recon(self, patch_tokens: torch.Tensor, pred_tokens: torch.Tensor,
              prototypes: torch.Tensor, mask: torch.Tensor,
              aligned: torch.Tensor, avg_factor=None) -> Dict[str, torch.Tensor]:
        """``lambda_2 L_recon`` (Eqs. 7-9) of some images: their ``f`` and
        ``g`` (B', N, C), masks ``M`` (B', N) and membership of ``C`` (B',);
        ``avg_factor`` replaces the normaliser the loss would compute.

        Returns:
            dict: ``loss_recon`` and the logged ``recon_ce`` (see :meth:`contrastive_and_recon`).
        """
        loss_recon, recon_ce = self.recon_loss(
            self.image_projection(pred_tokens),
            self.image_projection(patch_tokens),
            prototypes, mask, aligned, avg_factor=avg_factor, return_cross_entropy=True)
        return dict(loss_recon=loss_recon, recon_ce=recon_ce)
